package libsvm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// ErrSyntax reports a malformed line; the error names the line number.
var ErrSyntax = errors.New("libsvm: syntax error")

// ErrDim reports a feature index beyond the dimension asked for.
var ErrDim = errors.New("libsvm: index out of range")

// Options configure Parse. The zero value reads standard LIBSVM files.
type Options struct {
	// ZeroBased accepts index 0 and stores file index i as column i, for
	// files written 0-based (as some svmlight exporters do). By default
	// indices are 1-based, as LIBSVM defines them: index 0 is an error and
	// file index i is stored as column i-1.
	ZeroBased bool
	// MaxIndex rejects indices above it (in the file's numbering); zero
	// means no limit besides int32.
	MaxIndex int
}

// Data is a sparse data set in compressed sparse row form. Row i has label
// Labels[i] and features Values[k] at columns Cols[k] for k in
// RowPtr[i]:RowPtr[i+1], columns strictly ascending. Columns are 0-based.
type Data struct {
	Labels []float64
	RowPtr []int
	Cols   []int32
	Values []float32
	// Dim is one more than the largest column seen (0 with no features):
	// the width a dense copy needs.
	Dim int
}

// N returns the number of rows.
func (d *Data) N() int { return len(d.Labels) }

// Row returns the columns and values of row i (views into d).
func (d *Data) Row(i int) ([]int32, []float32) {
	lo, hi := d.RowPtr[i], d.RowPtr[i+1]
	return d.Cols[lo:hi], d.Values[lo:hi]
}

// NNZ returns the number of stored features.
func (d *Data) NNZ() int { return len(d.Values) }

// Dense returns the features as a row-major N()×dim matrix. dim must be at
// least Dim (pass Dim, or the model's width when test data may lack the
// training data's last columns); a larger feature yields ErrDim.
func (d *Data) Dense(dim int) ([]float32, error) {
	if dim < d.Dim {
		return nil, fmt.Errorf("libsvm: dense width %d, but column %d is used: %w", dim, d.Dim-1, ErrDim)
	}
	x := make([]float32, d.N()*dim)
	for i := 0; i < d.N(); i++ {
		cols, vals := d.Row(i)
		row := x[i*dim : (i+1)*dim]
		for k, c := range cols {
			row[c] = vals[k]
		}
	}
	return x, nil
}

// BinaryLabels maps labels to {0, 1} for logistic regression: values > 0
// (LIBSVM's +1) become 1 and the others (-1 or 0) become 0. Labels other
// than -1, 0 and +1 are an error, since they mean the file is not a binary
// problem.
func (d *Data) BinaryLabels() ([]int32, error) {
	out := make([]int32, len(d.Labels))
	for i, l := range d.Labels {
		switch l {
		case 1:
			out[i] = 1
		case 0, -1:
		default:
			return nil, fmt.Errorf("libsvm: row %d has label %v, not a binary label (-1, 0 or +1): %w", i, l, ErrSyntax)
		}
	}
	return out, nil
}

// ClassLabels returns integral labels as classes numbered from 0 by their
// sorted distinct values (e.g. {-1, +1} → {0, 1}, {1, 2, 3} → {0, 1, 2}),
// with the sorted values themselves. A non-integral label is an error.
func (d *Data) ClassLabels() (classes []int32, values []float64, err error) {
	seen := map[float64]bool{}
	for i, l := range d.Labels {
		if l != math.Trunc(l) {
			return nil, nil, fmt.Errorf("libsvm: row %d has label %v, not a class: %w", i, l, ErrSyntax)
		}
		if !seen[l] {
			seen[l] = true
			values = append(values, l)
		}
	}
	slices.Sort(values)
	idx := make(map[float64]int32, len(values))
	for i, v := range values {
		idx[v] = int32(i)
	}
	classes = make([]int32, len(d.Labels))
	for i, l := range d.Labels {
		classes[i] = idx[l]
	}
	return classes, values, nil
}

// ReadFile parses the LIBSVM file at path.
func ReadFile(path string, opts Options) (*Data, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("libsvm: %w", err)
	}
	defer f.Close()
	d, err := Parse(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Parse reads LIBSVM text: one example per line,
//
//	<label> <index>:<value> <index>:<value> ...
//
// with indices strictly ascending. Fields are separated by spaces or tabs;
// trailing blanks and CRLF line ends are accepted; '#' starts a comment to
// the end of the line; blank and comment-only lines are skipped; an
// svmlight "qid:<n>" field after the label is ignored. Errors wrap
// ErrSyntax and name the line number.
func Parse(r io.Reader, opts Options) (*Data, error) {
	d := &Data{RowPtr: []int{0}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 256<<20)
	line := 0
	maxIdx := opts.MaxIndex
	if maxIdx <= 0 || maxIdx > math.MaxInt32 {
		maxIdx = math.MaxInt32
	}
	for sc.Scan() {
		line++
		if err := d.parseLine(sc.Text(), opts.ZeroBased, maxIdx); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("libsvm: after line %d: %w", line, err)
	}
	return d, nil
}

func (d *Data) parseLine(s string, zeroBased bool, maxIdx int) error {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
	if len(fields) == 0 {
		return nil
	}
	label, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || math.IsNaN(label) || math.IsInf(label, 0) {
		return fmt.Errorf("label %q is not a finite number: %w", fields[0], ErrSyntax)
	}
	start := len(d.Cols)
	prev := -1
	for k, f := range fields[1:] {
		colon := strings.IndexByte(f, ':')
		if colon < 0 {
			d.Cols, d.Values = d.Cols[:start], d.Values[:start]
			return fmt.Errorf("field %d %q is not index:value: %w", k+2, f, ErrSyntax)
		}
		if k == 0 && f[:colon] == "qid" {
			continue
		}
		idx, err := strconv.Atoi(f[:colon])
		bad := ""
		switch {
		case err != nil:
			bad = "is not an integer"
		case idx < 0 || (!zeroBased && idx == 0):
			bad = "is below the first index"
			if !zeroBased {
				bad = "is below 1 (LIBSVM indices are 1-based)"
			}
		case idx > maxIdx:
			bad = fmt.Sprintf("exceeds the maximum %d", maxIdx)
		case idx <= prev:
			bad = fmt.Sprintf("does not follow index %d (indices must ascend)", prev)
		}
		if bad != "" {
			d.Cols, d.Values = d.Cols[:start], d.Values[:start]
			return fmt.Errorf("index %q %s: %w", f[:colon], bad, ErrSyntax)
		}
		prev = idx
		v, err := strconv.ParseFloat(f[colon+1:], 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			d.Cols, d.Values = d.Cols[:start], d.Values[:start]
			return fmt.Errorf("value %q of index %d is not a finite float32: %w", f[colon+1:], idx, ErrSyntax)
		}
		col := idx
		if !zeroBased {
			col--
		}
		d.Cols = append(d.Cols, int32(col))
		d.Values = append(d.Values, float32(v))
		d.Dim = max(d.Dim, col+1)
	}
	d.Labels = append(d.Labels, label)
	d.RowPtr = append(d.RowPtr, len(d.Cols))
	return nil
}
