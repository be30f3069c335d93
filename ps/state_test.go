package ps

import (
	"context"
	"math"
	"reflect"
	"testing"
)

// TestSnapshotRestoreIsBitIdentical: for every optimizer and mode, a
// partition restored from a snapshot on another server evolves bit for bit
// like the original under the same later pushes.
func TestSnapshotRestoreIsBitIdentical(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []OptimizerKind{OptSGD, OptMomentum, OptAdagrad, OptAdam, OptFTRL} {
		for _, mode := range []Consistency{{Mode: Async}, {Mode: Sync, Workers: 3}, {Mode: SSP, Workers: 2, Staleness: 1}} {
			t.Run(string(kind)+"/"+string(mode.Mode), func(t *testing.T) {
				spec := VariableSpec{Name: "w", Shape: []int64{8, 3},
					Init:        Initializer{Kind: InitUniform, Min: -1, Max: 1, Seed: 7},
					Optimizer:   OptimizerSpec{Kind: kind, LR: 0.1},
					Consistency: mode}
				a := namedServer(t, "a")
				b := namedServer(t, "b")
				if _, err := a.Create(ctx, &CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
					t.Fatal(err)
				}
				key := PartKey{"w", 0}
				grad := func(i int) []float32 {
					g := make([]float32, 24)
					for j := range g {
						g[j] = float32(math.Sin(float64(i*24 + j)))
					}
					return g
				}
				push := func(s *Server, i, worker int, step int64) {
					t.Helper()
					req := &PushRequest{ClientID: "c", Seq: uint64(i + 1), Worker: worker, Clock: int64(i/2 + 1),
						Parts: []PushPart{{Key: key, Grad: grad(i), Step: step}}}
					if _, err := s.Push(ctx, req); err != nil {
						t.Fatal(err)
					}
				}
				// Leave a sync step half aggregated: 4 pushes = one full
				// step of 3 workers and one pending gradient.
				workers := []int{0, 1, 0, 1, 0, 1}
				if mode.Mode == Sync {
					workers = []int{0, 1, 2, 0, 1, 2}
				}
				steps := []int64{0, 0, 0, 1, 1, 1}
				for i := 0; i < 4; i++ {
					push(a, i, workers[i], steps[i])
				}
				st, err := a.Snapshot(key)
				if err != nil {
					t.Fatal(err)
				}
				// Through the binary encoding, as transports and
				// checkpoints carry it.
				enc, err := st.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				var dec PartitionState
				if err := dec.UnmarshalBinary(enc); err != nil {
					t.Fatal(err)
				}
				if err := dec.UnmarshalBinary(enc[:len(enc)-1]); err == nil {
					t.Fatal("truncated encoding decoded")
				}
				if err := b.Restore(&dec); err != nil {
					t.Fatal(err)
				}
				st2, _ := b.Snapshot(key)
				if !reflect.DeepEqual(st, st2) {
					t.Fatalf("restored state differs:\n%+v\n%+v", st, st2)
				}
				for _, s := range []*Server{a, b} {
					push(s, 4, workers[4], steps[4])
					push(s, 5, workers[5], steps[5])
				}
				sa, _ := a.Snapshot(key)
				sb, _ := b.Snapshot(key)
				if !reflect.DeepEqual(sa, sb) {
					t.Fatalf("states diverged after the same pushes:\n%+v\n%+v", sa, sb)
				}
				if sa.LSN == 0 || sa.Version == 0 {
					t.Fatalf("lsn %d version %d: pushes not counted", sa.LSN, sa.Version)
				}
			})
		}
	}
}

func TestRestoreRejectsBadState(t *testing.T) {
	s := namedServer(t, "a")
	spec := VariableSpec{Name: "w", Shape: []int64{4, 2}, Optimizer: OptimizerSpec{Kind: OptAdam, LR: 0.1}}
	good := func() *PartitionState {
		return &PartitionState{Spec: spec.normalized(), Index: 0, Rows: RowRange{Start: 0, End: 4},
			Values: make([]float32, 8), Slots: map[string][]float32{"m": make([]float32, 8), "v": make([]float32, 8)}}
	}
	if err := s.Restore(good()); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*PartitionState){
		"values":    func(st *PartitionState) { st.Values = st.Values[:7] },
		"slot":      func(st *PartitionState) { delete(st.Slots, "v") },
		"extraslot": func(st *PartitionState) { st.Slots["accum"] = make([]float32, 8) },
		"index":     func(st *PartitionState) { st.Index = 3 },
		"rows":      func(st *PartitionState) { st.Rows.End = 3 },
		"version":   func(st *PartitionState) { st.Version = -1 },
		"dedup":     func(st *PartitionState) { st.Dedup = map[string]DedupState{"c": {Max: 1, Seen: []uint64{2}}} },
	} {
		st := good()
		mut(st)
		if err := s.Restore(st); err == nil {
			t.Errorf("%s: bad state restored", name)
		}
	}
}

func namedServer(t *testing.T, id string) *Server {
	t.Helper()
	cfg := DefaultServerConfig()
	cfg.ID = id
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
