package checkpoint

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/flowps/flowps/ps"
)

// Checkpoint files and .npy/.npz files come from disks and other programs:
// these targets check that any bytes yield a value or an error, never a
// panic or an allocation far beyond the input.

func FuzzDecodePart(f *testing.F) {
	srv, _ := ps.NewServer(ps.ServerConfig{ID: "f"})
	defer srv.Close()
	spec := ps.VariableSpec{Name: "v", Shape: []int64{4, 2}, Init: ps.Initializer{Kind: ps.InitConstant, Value: 1},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptAdam, LR: 0.1}, Consistency: ps.Consistency{Mode: ps.Sync, Workers: 2}}
	srv.Create(context.Background(), &ps.CreateRequest{Spec: spec, Parts: []int{0}})
	srv.Push(context.Background(), &ps.PushRequest{ClientID: "c", Worker: 1, Parts: []ps.PushPart{{Key: ps.PartKey{Var: "v"}, Grad: make([]float32, 8)}}})
	st, _ := srv.Snapshot(ps.PartKey{Var: "v"})
	good, err := EncodePart(st)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(partMagic[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodePart(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes, and restores or fails
		// cleanly.
		again, err := EncodePart(st)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		if _, err := DecodePart(again); err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if st.Spec.Validate() == nil && st.Spec.NumElements() <= 1<<20 {
			s, _ := ps.NewServer(ps.ServerConfig{ID: "r"})
			s.Restore(st)
			s.Close()
		}
	})
}

func FuzzReadNPY(f *testing.F) {
	for _, name := range []string{"testdata/numpy1.24.2_f32_2x3.npy", "testdata/numpy1.24.2_i64_scalar.npy"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x93NUMPY\x01\x00\x10\x00{'shape': (9999999999999, 9999999999)}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ReadNPY(bytes.NewReader(b), 1<<20)
		if err != nil {
			return
		}
		if len(a.Data) > len(b) {
			t.Fatalf("%d data bytes from %d input bytes", len(a.Data), len(b))
		}
		n := itemSizes[a.Descr]
		for _, d := range a.Shape {
			n *= d
		}
		if n != int64(len(a.Data)) {
			t.Fatalf("shape %v of %s with %d data bytes", a.Shape, a.Descr, len(a.Data))
		}
		if a.Descr == "<f4" {
			v, err := a.Float32()
			if err != nil {
				t.Fatal(err)
			}
			// A C-order '<f4' array written back reads the same.
			var buf bytes.Buffer
			if err := WriteNPY(&buf, a.Shape, v); err != nil {
				t.Fatal(err)
			}
			if b2, err := ReadNPY(&buf, 0); err != nil || !bytes.Equal(b2.Data, a.Data) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

func FuzzReadNPZ(f *testing.F) {
	for _, name := range []string{"testdata/numpy1.24.2_savez.npz", "testdata/numpy1.24.2_savez_compressed.npz"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadNPZ(bytes.NewReader(b), int64(len(b)), 1<<20)
	})
}
