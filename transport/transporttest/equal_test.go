package transporttest

import (
	"math"
	"testing"

	"github.com/flowps/flowps/ps"
)

func TestDiffCatchesWhatTransportsBreak(t *testing.T) {
	base := func() *ps.PushRequest {
		return &ps.PushRequest{Parts: []ps.PushPart{{Rows: []int64{}, Grad: []float32{math.Float32frombits(0x7f800001)}}}}
	}
	if d := Diff(base(), base()); d != "" {
		t.Fatalf("equal values differ: %s", d)
	}
	cases := map[string]func(*ps.PushRequest){
		"empty rows to nil":  func(r *ps.PushRequest) { r.Parts[0].Rows = nil },
		"quieted NaN":        func(r *ps.PushRequest) { r.Parts[0].Grad[0] = math.Float32frombits(0x7fc00001) },
		"grad to nil":        func(r *ps.PushRequest) { r.Parts[0].Grad = nil },
		"seq":                func(r *ps.PushRequest) { r.Seq = 1 },
		"extra part":         func(r *ps.PushRequest) { r.Parts = append(r.Parts, ps.PushPart{}) },
		"key":                func(r *ps.PushRequest) { r.Parts[0].Key.Index = 1 },
		"negative zero step": func(r *ps.PushRequest) { r.Parts[0].Step = -1 },
	}
	for name, mutate := range cases {
		r := base()
		mutate(r)
		if Diff(base(), r) == "" {
			t.Errorf("%s: Diff saw no difference", name)
		}
	}
	// Scalar float fields keep their bits too.
	a := &ps.CreateRequest{Spec: ps.VariableSpec{Init: ps.Initializer{Value: float32(math.Copysign(0, -1))}}}
	b := &ps.CreateRequest{}
	if Diff(a, b) == "" {
		t.Errorf("-0 and +0 compare equal")
	}
	// Non-strict slices: nil and empty are the same.
	if d := Diff(&ps.CreateRequest{Parts: []int{}}, &ps.CreateRequest{}); d != "" {
		t.Errorf("empty and nil Parts differ: %s", d)
	}
}
