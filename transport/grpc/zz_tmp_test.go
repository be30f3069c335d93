package grpctransport

import (
	"context"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

func TestTmpEnvelopeSpeed(t *testing.T) {
	d := NewDialer(DialerConfig{})
	defer d.Close()
	s, addr := serveReplicating(t, "b", d)
	ctx := context.Background()
	svc, _ := d.Dial(ctx, addr)
	c := svc.(*client)
	spec := ps.VariableSpec{Name: "w", Shape: []int64{4 << 20}, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, MaxPartitionBytes: 64 << 20}
	g := make([]float32, 4<<20)
	key := ps.PartKey{Var: "w"}
	for i := 0; i < 4; i++ {
		t0 := time.Now()
		_, err := c.Install(ctx, &ps.InstallRequest{From: "x", Key: key, Term: ps.Term{N: uint64(i + 1), ID: "x"},
			State: &ps.PartitionState{Spec: spec, Rows: ps.RowRange{Start: 0, End: 4 << 20}, Values: g, Term: ps.Term{N: uint64(i + 1), ID: "x"}}})
		t1 := time.Now()
		_, err2 := c.Replicate(ctx, &ps.ReplicateRequest{From: "x", Ops: []ps.ReplicateOp{{Key: key, Term: ps.Term{N: uint64(i + 1), ID: "x"}, LSN: 1, Grad: g}}})
		t2 := time.Now()
		_, err3 := c.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: key, Grad: g}}})
		t3 := time.Now()
		t.Logf("16MB install %v replicate %v push %v (%v %v %v)", t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), err, err2, err3)
	}
	_ = s
}
