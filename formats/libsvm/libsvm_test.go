package libsvm

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

const heart = "../../testdata/libsvm_heart_scale"

func TestHeartScale(t *testing.T) {
	d, err := ReadFile(heart, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.N() != 270 || d.Dim != 13 {
		t.Fatalf("N %d Dim %d, want 270 and 13", d.N(), d.Dim)
	}
	var pos, neg int
	for _, l := range d.Labels {
		switch l {
		case 1:
			pos++
		case -1:
			neg++
		default:
			t.Fatalf("label %v", l)
		}
	}
	if pos != 120 || neg != 150 {
		t.Errorf("%d positive, %d negative; want 120 and 150", pos, neg)
	}
	raw, _ := os.ReadFile(heart)
	if nnz := strings.Count(string(raw), ":"); d.NNZ() != nnz {
		t.Errorf("NNZ %d, file has %d index:value pairs", d.NNZ(), nnz)
	}
	// Row 0: +1 1:0.708333 2:1 3:1 4:-0.320755 5:-0.105023 6:-1 7:1 8:-0.419847 9:-1 10:-0.225806 12:1 13:-1
	cols, vals := d.Row(0)
	if !reflect.DeepEqual(cols, []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12}) {
		t.Errorf("row 0 columns %v", cols)
	}
	if vals[0] != 0.708333 || vals[3] != -0.320755 || vals[11] != -1 {
		t.Errorf("row 0 values %v", vals)
	}
	x, err := d.Dense(d.Dim)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != 270*13 || x[0] != 0.708333 || x[10] != 0 || x[11] != 1 || x[13+4] != 1 {
		t.Errorf("dense row 0 %v, row 1 %v", x[:13], x[13:26])
	}
	wide, err := d.Dense(20)
	if err != nil || wide[20+4] != 1 || wide[19] != 0 {
		t.Errorf("dense width 20: %v", err)
	}
	if _, err := d.Dense(12); !errors.Is(err, ErrDim) {
		t.Errorf("dense narrower than Dim: %v", err)
	}
	y, err := d.BinaryLabels()
	if err != nil || y[0] != 1 || y[1] != 0 {
		t.Errorf("binary labels %v %v", y[:2], err)
	}
	cls, vals2, err := d.ClassLabels()
	if err != nil || !reflect.DeepEqual(vals2, []float64{-1, 1}) || cls[0] != 1 || cls[1] != 0 {
		t.Errorf("class labels %v %v %v", cls[:2], vals2, err)
	}
}

func TestParseVariants(t *testing.T) {
	in := "# header comment\n" +
		"\n" +
		"1 2:0.5 10:-3\t\r\n" +
		"  -1   # no features\n" +
		"3 qid:7 1:1e-3 4:2 # trailing comment\n" +
		"2.5 3:7"
	d, err := Parse(strings.NewReader(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Labels, []float64{1, -1, 3, 2.5}) {
		t.Errorf("labels %v", d.Labels)
	}
	if !reflect.DeepEqual(d.RowPtr, []int{0, 2, 2, 4, 5}) || !reflect.DeepEqual(d.Cols, []int32{1, 9, 0, 3, 2}) {
		t.Errorf("rowptr %v cols %v", d.RowPtr, d.Cols)
	}
	if !reflect.DeepEqual(d.Values, []float32{0.5, -3, 1e-3, 2, 7}) || d.Dim != 10 {
		t.Errorf("values %v dim %d", d.Values, d.Dim)
	}
	if _, err := d.BinaryLabels(); !errors.Is(err, ErrSyntax) {
		t.Errorf("BinaryLabels of 3 and 2.5: %v", err)
	}
	if _, _, err := d.ClassLabels(); !errors.Is(err, ErrSyntax) {
		t.Errorf("ClassLabels of 2.5: %v", err)
	}
	z, err := Parse(strings.NewReader("0 0:1 2:3\n1 1:2\n"), Options{ZeroBased: true})
	if err != nil || !reflect.DeepEqual(z.Cols, []int32{0, 2, 1}) || z.Dim != 3 {
		t.Errorf("zero-based: %+v %v", z, err)
	}
	empty, err := Parse(strings.NewReader(""), Options{})
	if err != nil || empty.N() != 0 || empty.Dim != 0 {
		t.Errorf("empty: %+v %v", empty, err)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		in, want string
		opts     Options
	}{
		{"1 1:1\nx 1:1\n", `line 2: label "x" is not a finite number`, Options{}},
		{"nan 1:1\n", `line 1: label "nan"`, Options{}},
		{"1 1:1\n\n1 1:2 3\n", `line 3: field 3 "3" is not index:value`, Options{}},
		{"1 0:1\n", `line 1: index "0" is below 1`, Options{}},
		{"1 -1:1\n", `line 1: index "-1" is below the first index`, Options{ZeroBased: true}},
		{"1 3:1 2:1\n", `line 1: index "2" does not follow index 3`, Options{}},
		{"1 2:1 2:1\n", `line 1: index "2" does not follow index 2`, Options{}},
		{"1 a:1\n", `line 1: index "a" is not an integer`, Options{}},
		{"1 1:\n", `line 1: value "" of index 1`, Options{}},
		{"1 1:1e40\n", `line 1: value "1e40" of index 1 is not a finite float32`, Options{}},
		{"1 1:inf\n", `line 1: value "inf"`, Options{}},
		{"1 5:1\n", `line 1: index "5" exceeds the maximum 4`, Options{MaxIndex: 4}},
		{"1 99999999999:1\n", `line 1: index "99999999999" exceeds the maximum`, Options{}},
	}
	for _, c := range cases {
		_, err := Parse(strings.NewReader(c.in), c.opts)
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.in, err, c.want)
		}
	}
	if _, err := ReadFile("does-not-exist", Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	raw, _ := os.ReadFile(heart)
	f.Add(string(raw[:400]))
	f.Add("1 qid:3 1:2 # c\n-1\n")
	f.Fuzz(func(t *testing.T, in string) {
		d, err := Parse(strings.NewReader(in), Options{MaxIndex: 1 << 16})
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !strings.Contains(err.Error(), "token too long") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(d.RowPtr) != d.N()+1 || d.RowPtr[d.N()] != d.NNZ() {
			t.Fatalf("bad CSR")
		}
		for i := 0; i < d.N(); i++ {
			cols, _ := d.Row(i)
			for k := 1; k < len(cols); k++ {
				if cols[k] <= cols[k-1] {
					t.Fatalf("row %d columns not ascending", i)
				}
			}
		}
		if _, err := d.Dense(d.Dim); err != nil {
			t.Fatal(err)
		}
	})
}
