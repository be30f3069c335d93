package ps

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// serverWith4MiB returns a server hosting one 4 MiB async SGD partition.
func serverWith4MiB(b *testing.B) (*Server, int64) {
	s, err := NewServer(ServerConfig{ID: "b"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	n := int64(1 << 20)
	spec := VariableSpec{Name: "v", Shape: []int64{n}, Optimizer: OptimizerSpec{Kind: OptSGD, LR: 0.1},
		Init: Initializer{Kind: InitZeros}, MaxPartitionBytes: 64 << 20}
	if _, err := s.Create(context.Background(), &CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		b.Fatal(err)
	}
	return s, n
}

// BenchmarkServerPush4MiB: one dense SGD push of 4 MiB through
// Server.Push (validation, finiteness check, dedup, apply), no transport.
func BenchmarkServerPush4MiB(b *testing.B) {
	s, n := serverWith4MiB(b)
	g := make([]float32, n)
	b.SetBytes(4 * n)
	for i := 0; i < b.N; i++ {
		req := &PushRequest{ClientID: "c", Seq: uint64(i + 1), Parts: []PushPart{{Key: PartKey{"v", 0}, Grad: g}}}
		if _, err := s.Push(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerPull4MiB: one dense pull of 4 MiB through Server.Pull.
func BenchmarkServerPull4MiB(b *testing.B) {
	s, n := serverWith4MiB(b)
	b.SetBytes(4 * n)
	for i := 0; i < b.N; i++ {
		if _, err := s.Pull(context.Background(), &PullRequest{ClientID: "c", Parts: []PullPart{{Key: PartKey{"v", 0}}}}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFirstNonFinite(t *testing.T) {
	finite := []float32{0, float32(math.Copysign(0, -1)), 1, -2.5, math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, 1e-40}
	bads := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00001), math.Float32frombits(0xffffffff)}
	for n := 0; n < 70; n++ {
		for pos := -1; pos < n; pos++ {
			for _, bad := range bads {
				g := make([]float32, n)
				for i := range g {
					g[i] = finite[i%len(finite)]
				}
				if pos >= 0 {
					g[pos] = bad
					g[n-1] = bad // a later one must not hide the first
				}
				if got := firstNonFinite(g); got != pos {
					t.Fatalf("len %d, %v at %d: firstNonFinite = %d", n, bad, pos, got)
				}
				// The same from an odd offset (a window of a larger frame).
				h := make([]float32, n+1)
				copy(h[1:], g)
				if got := firstNonFinite(h[1:]); got != pos {
					t.Fatalf("len %d at offset 1, %v at %d: firstNonFinite = %d", n, bad, pos, got)
				}
			}
		}
	}
}

// BenchmarkServerPushSync: sync-mode SGD pushes of the MLP's first layer
// (784×256), one step's gradients from each of `workers` workers per
// iteration, through Server.Push: the psd's work per training step for
// that variable.
func BenchmarkServerPushSync(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s, err := NewServer(ServerConfig{ID: "b"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			spec := VariableSpec{Name: "w", Shape: []int64{784, 256}, Optimizer: OptimizerSpec{Kind: OptSGD, LR: 0.1},
				Consistency: Consistency{Mode: Sync, Workers: workers}}
			if _, err := s.Create(context.Background(), &CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
				b.Fatal(err)
			}
			g := make([]float32, 784*256)
			for i := range g {
				g[i] = float32(i%13) * 1e-3
			}
			b.SetBytes(int64(4 * len(g) * workers))
			for i := 0; b.Loop(); i++ {
				for w := range workers {
					req := &PushRequest{ClientID: fmt.Sprint("c", w), Seq: uint64(i + 1), Worker: w,
						Parts: []PushPart{{Key: PartKey{"w", 0}, Grad: g, Step: int64(i)}}}
					if _, err := s.Push(context.Background(), req); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkServerPull4MiBDst: BenchmarkServerPull4MiB into the caller's
// buffer (PullPart.Dst), as ps.Client and the transports' clients pull:
// one copy of the partition, no allocation.
func BenchmarkServerPull4MiBDst(b *testing.B) {
	s, n := serverWith4MiB(b)
	dst := make([]float32, n)
	b.SetBytes(4 * n)
	for i := 0; i < b.N; i++ {
		if _, err := s.Pull(context.Background(), &PullRequest{ClientID: "c", Parts: []PullPart{{Key: PartKey{"v", 0}, Dst: dst}}}); err != nil {
			b.Fatal(err)
		}
	}
}
