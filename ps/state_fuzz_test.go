package ps

import (
	"context"
	"testing"

	"github.com/flowps/flowps/sharding"
)

// FuzzPartitionStateUnmarshal feeds arbitrary bytes to the decoder of
// partition states (they arrive from peers during migration and from
// checkpoint files): it must return a state or an error, never panic or
// allocate beyond its input, and what it accepts Restore either hosts or
// rejects with an error.
func FuzzPartitionStateUnmarshal(f *testing.F) {
	srv, _ := NewServer(ServerConfig{ID: "f"})
	defer srv.Close()
	spec := VariableSpec{Name: "v", Shape: []int64{4, 2}, Init: Initializer{Kind: InitConstant, Value: 1},
		Optimizer: OptimizerSpec{Kind: OptAdam, LR: 0.1}, Consistency: Consistency{Mode: Sync, Workers: 2}}
	srv.Create(context.Background(), &CreateRequest{Spec: spec, Parts: []int{0}})
	srv.Push(context.Background(), &PushRequest{ClientID: "c", Worker: 1, Parts: []PushPart{{Key: PartKey{Var: "v"}, Grad: make([]float32, 8)}}})
	st, _ := srv.Snapshot(PartKey{Var: "v"})
	good, err := st.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(append(append([]byte{}, stateMagic[:]...), 2, 0, 0, 0, '{', '}'))
	f.Add(append(append([]byte{}, stateMagic[:]...), 2, 0, 0, 0, '[', ']'))
	// Regression: header lengths whose 4·n wrapped around 2^64 made
	// UnmarshalBinary panic in make.
	wrap := []byte(`{"num_values":4611686018427387904}`)
	f.Add(append(append(append([]byte{}, stateMagic[:]...), byte(len(wrap)), 0, 0, 0), wrap...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st PartitionState
		if err := st.UnmarshalBinary(b); err != nil {
			return
		}
		n := len(st.Values) + len(st.Machine.Acc)
		for _, s := range st.Slots {
			n += len(s)
		}
		if 4*n > len(b) {
			t.Fatalf("decoded %d floats from %d bytes", n, len(b))
		}
		if st.Spec.Validate() == nil && st.Spec.NumElements() <= 1<<16 {
			s, _ := NewServer(ServerConfig{ID: "r"})
			s.Restore(&st)
			s.Close()
		}
	})
}

// FuzzCreateSpec checks the spec a Create request carries (from any
// client): a spec Validate accepts must have a partition count that is
// cheap to materialize, because the server builds the list of partitions
// (sharding.SplitRows) for every Create.
func FuzzCreateSpec(f *testing.F) {
	f.Add(int64(1000), int64(10), int64(0), int64(0))
	f.Add(int64(1)<<20, int64(1), int64(1), int64(4))
	f.Add(int64(1)<<40, int64(1), int64(1), int64(4))
	f.Fuzz(func(t *testing.T, rows, cols, minB, maxB int64) {
		s := VariableSpec{Name: "v", Shape: []int64{rows, cols}, Init: Initializer{Kind: InitZeros},
			Optimizer: OptimizerSpec{Kind: OptSGD, LR: 1}, MinPartitionBytes: minB, MaxPartitionBytes: maxB}
		if s.Validate() != nil {
			return
		}
		// The count SplitRows will allocate, computed without allocating.
		lo, hi := s.partitionBounds()
		n := sharding.CountPartitions(s.Rows(), 4*s.RowSize(), lo, hi)
		if n > MaxPartitions {
			t.Fatalf("Validate accepts shape %v with partition bounds [%d, %d]: %d partitions would be allocated", s.Shape, minB, maxB, n)
		}
	})
}
