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
// bound; rowBytes ≤ 0 counts as 1. When the bounds conflict (no row count
// satisfies both) minBytes wins and partitions exceed maxBytes; a single row
// larger than maxBytes is a partition of its own. rows ≤ 0 yields no
// partitions. The result holds one RowRange per partition, so callers that
// take sizes from users must bound rows/(maxBytes/rowBytes) first.
func SplitRows(rows, rowBytes, minBytes, maxBytes int64) []RowRange {
	n := CountPartitions(rows, rowBytes, minBytes, maxBytes)
	if n == 0 {
		return nil
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

// CountPartitions is len(SplitRows(rows, rowBytes, minBytes, maxBytes)),
// computed without allocating, so that sizes a user sent can be checked
// before they are split.
func CountPartitions(rows, rowBytes, minBytes, maxBytes int64) int64 {
	if rows <= 0 {
		return 0
	}
	if rowBytes <= 0 {
		rowBytes = 1
	}
	// Work in rows, not bytes: rows*rowBytes may overflow, and rounding the
	// byte bounds to whole rows is what makes every partition respect them.
	n := int64(1)
	if maxBytes > 0 {
		maxRows := max(maxBytes/rowBytes, 1) // rows that fit, at least one
		n = ceilDiv(rows, maxRows)
	}
	if minBytes > 0 {
		minRows := ceilDiv(minBytes, rowBytes) // rows needed to reach minBytes
		if most := rows / minRows; n > most {
			n = most
		}
	}
	return max(min(n, rows), 1)
}

// ceilDiv is ⌈a/b⌉ for a, b > 0, without overflow.
func ceilDiv(a, b int64) int64 { return (a-1)/b + 1 }
