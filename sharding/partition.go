package sharding

// RowRange is a half-open range [Start, End) of a variable's rows.
type RowRange struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Len is the number of rows in the range.
func (r RowRange) Len() int64 { return r.End - r.Start }

// SplitRows splits rows rows of rowBytes bytes each into contiguous
// partitions, as TensorFlow's min/max-size partitioners do: as few
// partitions as keep each at most maxBytes, but none smaller than minBytes
// (except when the whole variable is smaller), and never more partitions than
// rows. Sizes differ by at most one row. Zero or negative bounds mean no
// bound. rows ≤ 0 yields no partitions.
func SplitRows(rows, rowBytes, minBytes, maxBytes int64) []RowRange {
	if rows <= 0 {
		return nil
	}
	if rowBytes <= 0 {
		rowBytes = 1
	}
	total := rows * rowBytes
	n := int64(1)
	if maxBytes > 0 {
		n = (total + maxBytes - 1) / maxBytes
	}
	if minBytes > 0 {
		if most := total / minBytes; n > most {
			n = most
		}
	}
	if n < 1 {
		n = 1
	}
	if n > rows {
		n = rows
	}
	out := make([]RowRange, n)
	base, extra := rows/n, rows%n
	start := int64(0)
	for i := int64(0); i < n; i++ {
		size := base
		if i < extra {
			size++
		}
		out[i] = RowRange{Start: start, End: start + size}
		start += size
	}
	return out
}
