package ps

import (
	"context"
	"testing"

	"github.com/flowps/flowps/sharding"
)

// BenchmarkClientStep: one sync training step of the MLP 784-256-128-10
// through a Client and an in-process Server (what trainer --local does per
// step): one PullMany of the six variables at the step's version, then one
// PushMany per gradient, as the runtime issues them.
func BenchmarkClientStep(b *testing.B) {
	ctx := context.Background()
	srv, err := NewServer(ServerConfig{ID: "local"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c, err := NewClient(ClientConfig{Members: StaticMembers{{ID: "local", Role: sharding.RolePS, Addr: "local"}},
		Dialer: DirectDialer{"local": srv}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	shapes := map[string][]int64{"d1/w": {784, 256}, "d1/b": {256}, "d2/w": {256, 128}, "d2/b": {128}, "d3/w": {128, 10}, "d3/b": {10}}
	order := []string{"d1/w", "d1/b", "d2/w", "d2/b", "d3/w", "d3/b"}
	var pulls []PullOp
	grads := map[string][]float32{}
	bytes := 0
	for _, name := range order {
		spec := VariableSpec{Name: name, Shape: shapes[name], Optimizer: OptimizerSpec{Kind: OptSGD, LR: 0.1},
			Consistency: Consistency{Mode: Sync, Workers: 1}}
		if err := c.CreateVariable(ctx, spec); err != nil {
			b.Fatal(err)
		}
		n := int(spec.NumElements())
		pulls = append(pulls, PullOp{Var: name, Dst: make([]float32, n)})
		grads[name] = make([]float32, n)
		bytes += 8 * n
	}
	b.SetBytes(int64(bytes))
	for step := int64(0); b.Loop(); step++ {
		for i := range pulls {
			pulls[i].MinVersion = step
		}
		if _, err := c.PullMany(ctx, pulls, PullOptions{}); err != nil {
			b.Fatal(err)
		}
		for i := len(order) - 1; i >= 0; i-- {
			if err := c.Push(ctx, order[i], grads[order[i]], step); err != nil {
				b.Fatal(err)
			}
		}
	}
}
