package grpctransport

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
)

// BenchmarkMLPStepComm is the communication of one sync training step of
// the MLP 784-256-128-10 (the training benchmark's model) with no compute:
// a ps.Client pulls the six variables at the step's version over gRPC from
// a ps.Server (sync, one worker, SGD) in this process, then pushes the six
// gradients in backprop order, one call each, as the runtime does. Its
// time is what a distributed step adds to a local one when nothing
// overlaps; cpu-µs/op is client and server together. Sub-benchmarks: over
// the data path (the default) and over gRPC alone.
func BenchmarkMLPStepComm(b *testing.B) {
	for _, path := range []string{"", DataPathOff} {
		name := "datapath"
		if path == DataPathOff {
			name = "grpc"
		}
		b.Run(name, func(b *testing.B) { benchMLPStepComm(b, path) })
	}
}

func benchMLPStepComm(b *testing.B, path string) {
	ctx := context.Background()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "s"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := NewServer(srv, ServerConfig{})
	go gs.Serve(lis)
	defer gs.Stop()
	d := NewDialer(DialerConfig{DataPath: path})
	defer d.Close()
	c, err := ps.NewClient(ps.ClientConfig{Members: ps.StaticMembers{{ID: "s", Role: sharding.RolePS, Addr: lis.Addr().String()}}, Dialer: d})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	type v struct {
		name  string
		shape []int64
	}
	vars := []v{{"d1/w", []int64{784, 256}}, {"d1/b", []int64{256}}, {"d2/w", []int64{256, 128}},
		{"d2/b", []int64{128}}, {"d3/w", []int64{128, 10}}, {"d3/b", []int64{10}}}
	var pulls []ps.PullOp
	grads := make([][]float32, len(vars))
	bytes := 0
	for i, x := range vars {
		spec := ps.VariableSpec{Name: x.name, Shape: x.shape, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 0.1},
			Consistency: ps.Consistency{Mode: ps.Sync, Workers: 1}}
		if err := c.CreateVariable(ctx, spec); err != nil {
			b.Fatal(err)
		}
		n := int(spec.NumElements())
		pulls = append(pulls, ps.PullOp{Var: x.name, Dst: make([]float32, n)})
		grads[i] = make([]float32, n)
		bytes += 8 * n
	}
	b.SetBytes(int64(bytes))
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op") }()
	for step := int64(0); b.Loop(); step++ {
		for i := range pulls {
			pulls[i].MinVersion = step
		}
		if _, err := c.PullMany(ctx, pulls, ps.PullOptions{}); err != nil {
			b.Fatal(err)
		}
		for i := len(vars) - 1; i >= 0; i-- {
			if err := c.Push(ctx, vars[i].name, grads[i], step); err != nil {
				b.Fatal(fmt.Errorf("step %d: %w", step, err))
			}
		}
	}
}
