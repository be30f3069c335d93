package sharding

import (
	"math"
	"math/rand/v2"
	"testing"
)

// checkSplit verifies the contract of SplitRows for one input.
func checkSplit(t *testing.T, rows, rowBytes, minB, maxB int64) {
	t.Helper()
	parts := SplitRows(rows, rowBytes, minB, maxB)
	if rows <= 0 {
		if len(parts) != 0 {
			t.Errorf("SplitRows(%d,%d,%d,%d) = %v, want none", rows, rowBytes, minB, maxB, parts)
		}
		return
	}
	rb := max(rowBytes, 1)
	if len(parts) == 0 || int64(len(parts)) > rows {
		t.Fatalf("SplitRows(%d,%d,%d,%d): %d partitions", rows, rowBytes, minB, maxB, len(parts))
	}
	// Contiguous, non-empty, covering [0, rows), sizes within one row.
	next, lo, hi := int64(0), int64(math.MaxInt64), int64(0)
	for i, p := range parts {
		if p.Start != next || p.Len() <= 0 {
			t.Fatalf("SplitRows(%d,%d,%d,%d): part %d = %+v after row %d", rows, rowBytes, minB, maxB, i, p, next)
		}
		next = p.End
		lo, hi = min(lo, p.Len()), max(hi, p.Len())
	}
	if next != rows {
		t.Fatalf("SplitRows(%d,%d,%d,%d): covers %d rows", rows, rowBytes, minB, maxB, next)
	}
	if hi-lo > 1 {
		t.Errorf("SplitRows(%d,%d,%d,%d): sizes %d..%d", rows, rowBytes, minB, maxB, lo, hi)
	}
	minRowsOK := minB <= 0 || lo*rb >= minB
	maxRowsOK := maxB <= 0 || hi*rb <= maxB || hi == 1
	// minBytes holds unless the whole variable is smaller (one partition).
	if !minRowsOK && len(parts) > 1 {
		t.Errorf("SplitRows(%d,%d,%d,%d): %d partitions, smallest %d bytes < min", rows, rowBytes, minB, maxB, len(parts), lo*rb)
	}
	// maxBytes holds unless it conflicts with minBytes (min wins).
	if !maxRowsOK {
		conflict := minB > 0 && len(parts) == int(rows/((minB-1)/rb+1))
		if !conflict && !(len(parts) == 1 && rows*rb < minB) {
			t.Errorf("SplitRows(%d,%d,%d,%d): largest %d bytes > max without conflict", rows, rowBytes, minB, maxB, hi*rb)
		}
	}
	// As few partitions as the max bound needs: one fewer would exceed it.
	if maxB > 0 && len(parts) > 1 && maxRowsOK {
		n := int64(len(parts)) - 1
		if (rows+n-1)/n*rb <= maxB {
			t.Errorf("SplitRows(%d,%d,%d,%d): %d partitions, %d would do", rows, rowBytes, minB, maxB, len(parts), n)
		}
	}
}

func TestSplitRowsTable(t *testing.T) {
	cases := []struct {
		rows, rowBytes, minB, maxB int64
		want                       int
	}{
		{0, 4, 0, 0, 0},
		{-3, 4, 0, 0, 0},
		{1, 4, 0, 0, 1},
		{10, 4, 0, 0, 1},   // no bounds: one partition
		{10, 4, 0, 8, 5},   // 2 rows each
		{10, 4, 0, 7, 10},  // 1 row fits in 7 bytes, 2 do not
		{7, 3, 0, 5, 7},    // the case the byte-based split got wrong
		{10, 3, 7, 0, 1},   // min only: one partition
		{10, 3, 7, 6, 3},   // min 3 rows, max 2 rows: min wins
		{3, 4, 100, 0, 1},  // whole variable smaller than min
		{5, 100, 0, 10, 5}, // rows larger than max: one row each
		{784, 1024, 256 << 10, 16 << 20, 1},
		{1 << 20, 256, 256 << 10, 16 << 20, 16},
	}
	for _, c := range cases {
		got := SplitRows(c.rows, c.rowBytes, c.minB, c.maxB)
		if c.rows < math.MaxInt64/4 && len(got) != c.want {
			t.Errorf("SplitRows(%d,%d,%d,%d): %d partitions, want %d: %v", c.rows, c.rowBytes, c.minB, c.maxB, len(got), c.want, got)
		}
		if c.rows < 1<<21 {
			checkSplit(t, c.rows, c.rowBytes, c.minB, c.maxB)
		}
	}
}

func TestSplitRowsHugeDoesNotOverflow(t *testing.T) {
	// rows*rowBytes overflows int64; the split must still respect maxBytes.
	rows, rb, maxB := int64(1)<<40, int64(1)<<30, int64(1)<<55
	parts := SplitRows(rows, rb, 0, maxB)
	if want := rows / (maxB / rb); int64(len(parts)) != want {
		t.Fatalf("%d partitions, want %d", len(parts), want)
	}
	if parts[len(parts)-1].End != rows || parts[0].Len()*rb > maxB {
		t.Fatalf("first %+v last %+v", parts[0], parts[len(parts)-1])
	}
}

func TestSplitRowsProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		rows := rng.Int64N(3000) - 5
		rowBytes := rng.Int64N(64) - 2
		minB := rng.Int64N(2000) - 100
		maxB := rng.Int64N(5000) - 100
		checkSplit(t, rows, rowBytes, minB, maxB)
	}
}
