package ps_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
)

// TestStalePrimaryWithUnchangedViewDoesNotServeAfterHeal reproduces the
// Docker cluster failure: a partition's primary is cut off the network but
// its own view never changes (it keeps believing it is the active primary
// of term 1), while the majority's views drop it, take its partition over
// at a newer term and advance it through several sync steps. After healing
// (every node gets the full view again) the partition must serve the
// majority's newest copy: a pull for the majority's version returns it at
// once, a pull waiting for the next version is released by the next
// step's pushes, and the returning node's copy moves to the newer term.
func TestStalePrimaryWithUnchangedViewDoesNotServeAfterHeal(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const name = "w"
	key := ps.PartKey{Var: name}
	spec := ps.VariableSpec{Name: name, Shape: []int64{4},
		Init:        ps.Initializer{Kind: ps.InitConstant, Value: 100},
		Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
		Consistency: ps.Consistency{Mode: ps.Sync, Workers: 2}}
	w0, w1, r := c.client("w0", 0), c.client("w1", 1), c.client("reader", 0)
	for _, w := range []*ps.Client{w0, w1, r} {
		if err := w.CreateVariable(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	// One sync step: w0 pushes 1s, w1 pushes 3s, the mean 2 is applied
	// with LR 1, so after n steps every value is 100 - 2n at version n.
	grad0, grad1 := []float32{1, 1, 1, 1}, []float32{3, 3, 3, 3}
	want := func(version int64) []float32 {
		v := float32(100 - 2*version)
		return []float32{v, v, v, v}
	}
	step := func(s int64) {
		t.Helper()
		if err := w0.Push(ctx, name, grad0, s); err != nil {
			t.Fatalf("w0 push step %d: %v", s, err)
		}
		if err := w1.Push(ctx, name, grad1, s); err != nil {
			t.Fatalf("w1 push step %d: %v", s, err)
		}
		got := make([]float32, 4)
		v, err := w0.Pull(ctx, name, got, s+1)
		if err != nil {
			t.Fatalf("pull after step %d: %v", s, err)
		}
		if v != s+1 || !slices.Equal(got, want(s+1)) {
			t.Fatalf("after step %d: version %d values %v, want %d %v", s, v, got, s+1, want(s+1))
		}
	}
	var s int64
	for ; s < 3; s++ {
		step(s)
	}

	// Cut the primary off. Only the majority's views (and the trainers')
	// drop it; the isolated node's view stays as it was.
	lone := c.owners(key)[0].ID
	var rest []string
	var restMembers []sharding.Member
	for _, m := range c.members.Members {
		if m.ID != lone {
			rest = append(rest, m.ID)
			restMembers = append(restMembers, m)
		}
	}
	c.net.Partition([]string{lone}, append(slices.Clone(rest), "w0", "w1", "reader"))
	c.members.Epoch++
	for _, id := range rest {
		c.servers[id].SetView(sharding.View{Epoch: c.members.Epoch, Members: restMembers})
	}
	c.clients.set(restMembers)
	for ; s < 8; s++ {
		step(s)
	}
	if st, err := c.servers[lone].Snapshot(key); err != nil || st.Version != 3 {
		t.Fatalf("isolated copy: %v, %v; want version 3", st, err)
	}

	mst, err := c.servers[sharding.Place(key.String(), restMembers, 2)[0].ID].Snapshot(key)
	if err != nil || !(ps.Term{N: 1, ID: lone}).Less(mst.Term) {
		t.Fatalf("majority's copy: %v, %v; want a newer term than the isolated primary's", mst, err)
	}

	// w0 pushes the next step and waits for it on the majority's primary.
	if err := w0.Push(ctx, name, grad0, s); err != nil {
		t.Fatal(err)
	}
	pulled := make([]float32, 4)
	done := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := w0.Pull(pctx, name, pulled, s+1)
		if err == nil && v != s+1 {
			err = fmt.Errorf("pull returned version %d, want %d", v, s+1)
		}
		done <- err
	}()
	waitFor(t, 5*time.Second, "the pull to wait on the majority", func() error {
		for _, id := range rest {
			if c.servers[id].Stats().StalenessWaits > 0 {
				return nil
			}
		}
		return fmt.Errorf("not waiting yet")
	})

	// Heal; every node (the returning one included) gets the full view.
	c.net.Heal()
	c.setViewAll()

	// A reader asking for the majority's version gets it promptly, not
	// the returning node's stale copy (which would wait forever).
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	got := make([]float32, 4)
	v, err := r.Pull(rctx, name, got, s)
	rcancel()
	if err != nil {
		t.Fatalf("pull of version %d after heal: %v", s, err)
	}
	if v != s || !slices.Equal(got, want(s)) {
		t.Fatalf("after heal: version %d values %v, want %d %v", v, got, s, want(s))
	}
	// w1's push completes the step and releases w0's pull.
	if err := w1.Push(ctx, name, grad1, s); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("pull waiting for version %d: %v", s+1, err)
	}
	if !slices.Equal(pulled, want(s+1)) {
		t.Fatalf("after step %d: %v, want %v", s, pulled, want(s+1))
	}
	s++
	// The returning node leads the partition again, at a term newer than
	// the one it had before the cut, with the majority's history.
	st, err := c.servers[lone].Snapshot(key)
	if err != nil {
		t.Fatal(err)
	}
	if !mst.Term.Less(st.Term) || st.Term.ID != lone || st.Version != s {
		t.Fatalf("%s's copy after heal: term %v version %d, want a term of its own newer than %v at version %d", lone, st.Term, st.Version, mst.Term, s)
	}
	step(s)
}

// TestReturningPrimaryConfirmsTermBeforeServing: an isolated primary whose
// own view drops the others (and so refuses everything) gets the full view
// back before the majority's views include it again. It must not serve its
// stale copy in that moment: the members that reappeared in its view were
// not fenced under its term, so it takes over again first, adopting the
// majority's newer copy.
func TestReturningPrimaryConfirmsTermBeforeServing(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, reader := c.client("c0", 0), c.client("reader", 0)
	for _, x := range []*ps.Client{cl, reader} {
		if err := x.CreateVariable(ctx, counterSpec("a")); err != nil {
			t.Fatal(err)
		}
	}
	push := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := cl.Push(ctx, "a", []float32{-1}, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	push(5)
	key := ps.PartKey{Var: "a"}
	lone := c.owners(key)[0].ID
	var rest []string
	var restMembers []sharding.Member
	for _, m := range c.members.Members {
		if m.ID != lone {
			rest = append(rest, m.ID)
			restMembers = append(restMembers, m)
		}
	}
	c.net.Partition([]string{lone}, append(slices.Clone(rest), "c0", "reader"))
	c.members.Epoch++
	c.servers[lone].SetView(sharding.View{Epoch: c.members.Epoch, Members: []sharding.Member{member(lone)}})
	for _, id := range rest {
		c.servers[id].SetView(sharding.View{Epoch: c.members.Epoch, Members: restMembers})
	}
	c.clients.set(restMembers)
	push(5)
	mst, err := c.servers[sharding.Place(key.String(), restMembers, 2)[0].ID].Snapshot(key)
	if err != nil {
		t.Fatal(err)
	}

	// Heal; only the returning node and the clients see the full view yet.
	c.net.Heal()
	c.members.Epoch++
	c.servers[lone].SetView(sharding.View{Epoch: c.members.Epoch, Members: slices.Clone(c.members.Members)})
	c.clients.set(c.members.Members)
	got := []float32{0}
	v, err := reader.Pull(ctx, "a", got, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v != 10 || got[0] != 10 {
		t.Fatalf("pull from the returning primary: version %d value %v, want the majority's 10", v, got[0])
	}
	c.setViewAll()
	push(1)
	if v, err := reader.Pull(ctx, "a", got, 11); err != nil || got[0] != 11 {
		t.Fatalf("after one more push: version %d value %v err %v, want 11", v, got[0], err)
	}
	st, err := c.servers[lone].Snapshot(key)
	if err != nil || st.Term.ID != lone || !mst.Term.Less(st.Term) {
		t.Fatalf("returning primary's copy: %v, %v; want a term of its own newer than the majority's %v", st.Term, err, mst.Term)
	}
}
