package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

// newServer returns a server holding variables in each consistency mode
// and optimizer kind that matters, with a few pushes applied so values,
// slots and versions are not their initial ones.
func newServer(t *testing.T) (*ps.Server, []ps.VariableSpec) {
	t.Helper()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "ps-0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	specs := []ps.VariableSpec{
		{Name: "dense1/kernel", Shape: []int64{300, 20}, Init: ps.Initializer{Kind: ps.InitGlorotUniform, Seed: 3},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptAdam, LR: 0.01}, Consistency: ps.Consistency{Mode: ps.Async},
			MinPartitionBytes: 4096, MaxPartitionBytes: 8192},
		{Name: "bias", Shape: []int64{7}, Init: ps.Initializer{Kind: ps.InitConstant, Value: 0.5},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptMomentum, LR: 0.1}, Consistency: ps.Consistency{Mode: ps.Sync, Workers: 1}},
	}
	ctx := context.Background()
	for _, s := range specs {
		parts := make([]int, len(s.Partitions()))
		for i := range parts {
			parts[i] = i
		}
		if _, err := srv.Create(ctx, &ps.CreateRequest{Spec: s, Parts: parts}); err != nil {
			t.Fatal(err)
		}
		for step := int64(0); step < 3; step++ {
			for i, r := range s.Partitions() {
				g := make([]float32, r.Len()*s.RowSize())
				for j := range g {
					g[j] = float32(j%5) - 2 + float32(step)
				}
				if _, err := srv.Push(ctx, &ps.PushRequest{ClientID: "c", Seq: uint64(step), Parts: []ps.PushPart{{Key: ps.PartKey{Var: s.Name, Index: i}, Grad: g, Step: step}}}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if n := len(specs[0].Partitions()); n < 3 {
		t.Fatalf("kernel has %d partitions; the test wants several", n)
	}
	return srv, specs
}

func snapshot(t *testing.T, srv *ps.Server) []*ps.PartitionState {
	t.Helper()
	all, err := srv.SnapshotAll()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestPartRoundTripAndCorruption(t *testing.T) {
	srv, _ := newServer(t)
	dir := t.TempDir()
	for _, st := range snapshot(t, srv) {
		e, err := WritePart(dir, st)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadPart(dir, e)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatalf("%s: read back differs", st.Key())
		}
	}
	st := snapshot(t, srv)[0]
	e, _ := WritePart(dir, st)
	path := filepath.Join(dir, e.File)
	good, _ := os.ReadFile(path)
	// Every single-byte corruption is caught (by the SHA-256, and by the
	// CRC for DecodePart alone).
	for _, off := range []int{0, 9, 20, len(good) / 2, len(good) - 1} {
		bad := slices.Clone(good)
		bad[off] ^= 0x40
		os.WriteFile(path, bad, 0o644)
		if _, err := ReadPart(dir, e); err == nil {
			t.Errorf("flipped byte %d: read succeeded", off)
		}
		if off >= 16 && off < len(good)-4 {
			if _, err := DecodePart(bad); err == nil || !errors.Is(err, ps.ErrInvalidArgument) {
				t.Errorf("flipped payload byte %d: DecodePart = %v", off, err)
			}
		}
	}
	os.WriteFile(path, good[:len(good)-1], 0o644)
	if _, err := ReadPart(dir, e); err == nil {
		t.Error("truncated file read")
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	for _, de := range ents {
		if strings.Contains(de.Name(), ".tmp-") {
			t.Errorf("left %s", de.Name())
		}
	}
}

func TestPartFileNames(t *testing.T) {
	for name, want := range map[string]string{
		"dense1/kernel": "dense1%2Fkernel.3.part",
		"..":            "%2E%2E.3.part",
		"a.b":           "a%2Eb.3.part",
		"emb_1-x":       "emb_1-x.3.part",
	} {
		if got := PartFile(ps.PartKey{Var: name, Index: 3}); got != want {
			t.Errorf("PartFile(%q) = %q, want %q", name, got, want)
		}
	}
}

// writeCheckpoint writes srv's partitions as if nodes "a" and "b" each
// wrote half, and finalizes.
func writeCheckpoint(t *testing.T, root string, srv *ps.Server, id string) (*Complete, error) {
	t.Helper()
	if err := WriteRequest(root, Request{ID: id, Nodes: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	all := snapshot(t, srv)
	var a, b []*ps.PartitionState
	for i, st := range all {
		if i%2 == 0 {
			a = append(a, st)
		} else {
			b = append(b, st)
		}
	}
	if _, err := WriteNode(root, id, "a", nil, a); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteNode(root, id, "b", nil, b); err != nil {
		t.Fatal(err)
	}
	return Finalize(root, id, []string{"a", "b"})
}

func TestFinalizeOpenRestore(t *testing.T) {
	srv, specs := newServer(t)
	root := t.TempDir()
	id := NewID(time.Now())
	c, err := writeCheckpoint(t, root, srv, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Steps["bias"] != 3 || len(c.Nodes) != 2 {
		t.Errorf("complete: steps %v nodes %v", c.Steps, c.Nodes)
	}
	ck, err := Latest(root)
	if err != nil {
		t.Fatal(err)
	}
	if ck.ID != id {
		t.Fatalf("latest %s, want %s", ck.ID, id)
	}
	// Restore into a fresh server: every partition's state is identical,
	// optimizer slots included, and the next push gives the same result.
	dst, _ := ps.NewServer(ps.ServerConfig{ID: "ps-1"})
	defer dst.Close()
	for _, e := range ck.Parts {
		st, err := ck.ReadPart(e.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.Restore(st); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(snapshot(t, dst), snapshot(t, srv)) {
		t.Fatal("restored server differs from the original")
	}
	s := specs[0]
	g := make([]float32, s.Partitions()[0].Len()*s.RowSize())
	for i := range g {
		g[i] = 0.25
	}
	k := ps.PartKey{Var: s.Name}
	for _, x := range []*ps.Server{srv, dst} {
		if _, err := x.Push(context.Background(), &ps.PushRequest{Parts: []ps.PushPart{{Key: k, Grad: g}}}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := srv.Snapshot(k)
	b, _ := dst.Snapshot(k)
	if !reflect.DeepEqual(a.Values, b.Values) || !reflect.DeepEqual(a.Slots, b.Slots) {
		t.Error("an Adam step after restore differs from the original's")
	}
	// The variable reassembles to its full shape.
	_, vals, err := ck.ReadVariable(s.Name)
	if err != nil || int64(len(vals)) != s.NumElements() {
		t.Fatalf("ReadVariable: %d values, %v", len(vals), err)
	}
}

func TestIncompleteCheckpoints(t *testing.T) {
	srv, _ := newServer(t)
	root := t.TempDir()
	good := NewID(time.Now())
	if _, err := writeCheckpoint(t, root, srv, good); err != nil {
		t.Fatal(err)
	}
	// A node that never wrote its manifest.
	id := NewID(time.Now().Add(time.Second))
	WriteRequest(root, Request{ID: id, Nodes: []string{"a", "b"}})
	WriteNode(root, id, "a", nil, snapshot(t, srv))
	if _, err := Finalize(root, id, []string{"a", "b"}); !errors.Is(err, ErrIncomplete) {
		t.Errorf("missing node: %v", err)
	}
	// A partition missing from every manifest.
	id2 := NewID(time.Now().Add(2 * time.Second))
	WriteRequest(root, Request{ID: id2, Nodes: []string{"a"}})
	all := snapshot(t, srv)
	WriteNode(root, id2, "a", []ps.VariableSpec{all[0].Spec}, all[1:])
	if _, err := Finalize(root, id2, []string{"a"}); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing partition: %v", err)
	}
	// A sync variable at two versions.
	id3 := NewID(time.Now().Add(3 * time.Second))
	WriteRequest(root, Request{ID: id3, Nodes: []string{"a"}})
	twoPart := ps.VariableSpec{Name: "s", Shape: []int64{4, 1}, Init: ps.Initializer{Kind: ps.InitZeros},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Sync, Workers: 1},
		MinPartitionBytes: 4, MaxPartitionBytes: 8}
	ctx := context.Background()
	if _, err := srv.Create(ctx, &ps.CreateRequest{Spec: twoPart, Parts: []int{0, 1}}); err != nil {
		t.Fatal(err)
	}
	srv.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: ps.PartKey{Var: "s"}, Grad: []float32{1, 1}}}})
	WriteNode(root, id3, "a", nil, snapshot(t, srv))
	if _, err := Finalize(root, id3, []string{"a"}); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "versions") {
		t.Errorf("sync variable at two versions: %v", err)
	}
	// A complete checkpoint whose file later vanished is skipped too.
	id4 := NewID(time.Now().Add(4 * time.Second))
	srv.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: ps.PartKey{Var: "s", Index: 1}, Grad: []float32{1, 1}, Step: 0}}})
	c4, err := writeCheckpoint(t, root, srv, id4)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := Latest(root)
	if err != nil || ck.ID != id4 {
		t.Fatalf("latest = %v, %v; want %s", ck, err, id4)
	}
	os.Remove(filepath.Join(Dir(root, id4), c4.Parts[0].File))
	if ck, err := Latest(root); err != nil || ck.ID != good {
		t.Fatalf("after losing a file, latest = %v, %v; want %s", ck, err, good)
	}
	if _, err := Latest(t.TempDir()); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("empty root: %v", err)
	}
	// Prune keeps the newest complete one (id4 no longer opens, but its
	// mark is there) and what is newer; older ones go.
	removed, err := Prune(root, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{good, id, id2, id3}; !reflect.DeepEqual(removed, want) {
		t.Errorf("pruned %v, want %v", removed, want)
	}
}

func TestNPYMatchesNumpy(t *testing.T) {
	want, err := os.ReadFile("testdata/numpy1.24.2_f32_2x3.npy")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteNPY(&buf, []int64{2, 3}, []float32{0, 1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteNPY differs from numpy's np.save:\n got %q\nwant %q", buf.Bytes(), want)
	}
	a, err := ReadNPY(bytes.NewReader(want), 0)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := a.Float32(); !reflect.DeepEqual(a.Shape, []int64{2, 3}) || !reflect.DeepEqual(f, []float32{0, 1, 2, 3, 4, 5}) {
		t.Errorf("read %v %v", a.Shape, f)
	}
	sc, _ := os.ReadFile("testdata/numpy1.24.2_i64_scalar.npy")
	a, err = ReadNPY(bytes.NewReader(sc), 0)
	if err != nil || a.Descr != "<i8" || len(a.Shape) != 0 || len(a.Data) != 8 || int64(a.Data[0]) != 0xf9 {
		t.Errorf("scalar: %+v, %v", a, err)
	}
	for _, shape := range [][]int64{{5}, {}, {1, 1, 1, 1}, {0, 3}} {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		buf.Reset()
		if err := WriteNPY(&buf, shape, make([]float32, n)); err != nil {
			t.Fatal(err)
		}
		if hl := int(buf.Bytes()[8]) | int(buf.Bytes()[9])<<8; (10+hl)%64 != 0 {
			t.Errorf("shape %v: data at %d, not 64-aligned", shape, 10+hl)
		}
		a, err := ReadNPY(bytes.NewReader(buf.Bytes()), 0)
		if err != nil || len(a.Shape) != len(shape) {
			t.Errorf("shape %v: read %v, %v", shape, a, err)
		}
	}
	if got := npyHeader("<f4", []int64{5}); !strings.Contains(got, "'shape': (5,), }") {
		t.Errorf("1-d header %q", got)
	}
	if err := WriteNPY(&buf, []int64{2, 2}, []float32{1}); !errors.Is(err, ps.ErrShapeMismatch) {
		t.Errorf("wrong length: %v", err)
	}
}

func TestReadNumpyNPZ(t *testing.T) {
	for _, name := range []string{"numpy1.24.2_savez.npz", "numpy1.24.2_savez_compressed.npz"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		arrs, err := ReadNPZ(bytes.NewReader(b), int64(len(b)), 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w, err := arrs["w"].Float32()
		if err != nil || !reflect.DeepEqual(w, []float32{0, 1, 2, 3, 4, 5}) {
			t.Errorf("%s: w = %v, %v", name, w, err)
		}
	}
}

func TestExportNPZ(t *testing.T) {
	srv, specs := newServer(t)
	root := t.TempDir()
	if _, err := writeCheckpoint(t, root, srv, NewID(time.Now())); err != nil {
		t.Fatal(err)
	}
	ck, err := Latest(root)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ck.ExportNPZ(&buf); err != nil {
		t.Fatal(err)
	}
	arrs, err := ReadNPZ(bytes.NewReader(buf.Bytes()), int64(buf.Len()), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(arrs) != len(specs) {
		t.Fatalf("%d arrays, want %d", len(arrs), len(specs))
	}
	for _, s := range specs {
		a := arrs[s.Name]
		if a == nil || !reflect.DeepEqual(a.Shape, s.Shape) {
			t.Fatalf("%s: %+v", s.Name, a)
		}
		got, _ := a.Float32()
		// Compare with a pull of every partition from the live server.
		var want []float32
		for i := range s.Partitions() {
			st, _ := srv.Snapshot(ps.PartKey{Var: s.Name, Index: i})
			want = append(want, st.Values...)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: exported values differ from the server's", s.Name)
		}
	}
	os.WriteFile(filepath.Join(t.TempDir(), "x.npz"), buf.Bytes(), 0o644)
}

// TestDecodePartCraftedLengths: a file with a valid CRC whose state header
// claims lengths that overflow is an error, not a crash.
func TestDecodePartCraftedLengths(t *testing.T) {
	hdr := []byte(`{"num_values":4611686018427387904}`)
	payload := append([]byte("FLPSST\x00\x01"), byte(len(hdr)), 0, 0, 0)
	payload = append(payload, hdr...)
	b := append(append([]byte{}, partMagic[:]...), make([]byte, 8)...)
	binary.LittleEndian.PutUint64(b[8:], uint64(len(payload)))
	b = append(b, payload...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	if _, err := DecodePart(b); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("crafted lengths: %v", err)
	}
}
