package ps_test

import (
	"context"
	"fmt"

	"github.com/flowps/flowps/ps"
)

// A server hosting one variable in sync mode over two workers: each step's
// update is the mean of both workers' gradients, and a pull with MinVersion
// waits for the step it needs.
func ExampleServer() {
	ctx := context.Background()
	cfg := ps.DefaultServerConfig()
	cfg.ID = "ps-0"
	srv, err := ps.NewServer(cfg)
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	spec := ps.VariableSpec{
		Name:        "bias",
		Shape:       []int64{2},
		Init:        ps.Initializer{Kind: ps.InitConstant, Value: 1},
		Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 0.5},
		Consistency: ps.Consistency{Mode: ps.Sync, Workers: 2},
	}
	if _, err := srv.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		panic(err)
	}
	key := ps.PartKey{Var: "bias", Index: 0}
	for w, g := range [][]float32{{1, 2}, {3, 4}} {
		resp, err := srv.Push(ctx, &ps.PushRequest{ClientID: fmt.Sprint("worker-", w), Seq: 1, Worker: w,
			Parts: []ps.PushPart{{Key: key, Step: 0, Grad: g}}})
		if err != nil {
			panic(err)
		}
		fmt.Println("worker", w, "push accepted at version", resp.Versions[0])
	}
	pulled, err := srv.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key, MinVersion: 1}}})
	if err != nil {
		panic(err)
	}
	fmt.Println("version", pulled.Parts[0].Version, "values", pulled.Parts[0].Values)
	// Output:
	// worker 0 push accepted at version 0
	// worker 1 push accepted at version 1
	// version 1 values [0 -0.5]
}
