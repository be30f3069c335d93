package ps

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/sharding"
)

// fakeServer is a minimal Service for the client's own logic: it stores
// partitions, applies pushes as value -= grad, refuses keys it does not own
// and records every request.
type fakeServer struct {
	id    string
	mu    sync.Mutex
	owns  func(PartKey) bool
	parts map[PartKey][]float32
	specs map[string]VariableSpec
	seqs  map[PartKey]map[uint64]bool
	pulls atomic.Int64
	push  atomic.Int64
}

func newFake(id string) *fakeServer {
	return &fakeServer{id: id, parts: map[PartKey][]float32{}, specs: map[string]VariableSpec{}, seqs: map[PartKey]map[uint64]bool{}}
}

func (f *fakeServer) check(k PartKey) error {
	if f.owns != nil && !f.owns(k) {
		return Errorf(ErrNotOwner, "%s on %s", k, f.id)
	}
	return nil
}

func (f *fakeServer) Create(_ context.Context, req *CreateRequest) (*CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ranges := req.Spec.Partitions()
	for _, i := range req.Parts {
		k := PartKey{req.Spec.Name, i}
		if err := f.check(k); err != nil {
			return nil, err
		}
		if _, ok := f.parts[k]; !ok {
			f.parts[k] = make([]float32, ranges[i].Len()*req.Spec.RowSize())
		}
	}
	f.specs[req.Spec.Name] = req.Spec
	return &CreateResponse{Versions: make([]int64, len(req.Parts))}, nil
}

func (f *fakeServer) Pull(_ context.Context, req *PullRequest) (*PullResponse, error) {
	f.pulls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &PullResponse{}
	for _, p := range req.Parts {
		if err := f.check(p.Key); err != nil {
			return nil, err
		}
		vals := f.parts[p.Key]
		rs := f.specs[p.Key.Var].RowSize()
		var out []float32
		if p.Rows == nil {
			out = append(out, vals...)
		} else {
			for _, r := range p.Rows {
				out = append(out, vals[r*rs:(r+1)*rs]...)
			}
		}
		resp.Parts = append(resp.Parts, PartValues{Key: p.Key, Values: out})
	}
	return resp, nil
}

func (f *fakeServer) Push(_ context.Context, req *PushRequest) (*PushResponse, error) {
	f.push.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range req.Parts {
		if err := f.check(p.Key); err != nil {
			return nil, err
		}
	}
	for _, p := range req.Parts {
		if f.seqs[p.Key] == nil {
			f.seqs[p.Key] = map[uint64]bool{}
		}
		if f.seqs[p.Key][req.Seq] {
			continue
		}
		f.seqs[p.Key][req.Seq] = true
		vals := f.parts[p.Key]
		rs := f.specs[p.Key.Var].RowSize()
		if p.Rows == nil {
			for i, g := range p.Grad {
				vals[i] -= g
			}
			continue
		}
		for j, r := range p.Rows {
			for c := int64(0); c < rs; c++ {
				vals[r*rs+c] -= p.Grad[int64(j)*rs+c]
			}
		}
	}
	return &PushResponse{Versions: make([]int64, len(req.Parts))}, nil
}

func (f *fakeServer) Close() error { return nil }

// mutableView is a MemberSource whose members a test changes.
type mutableView struct {
	mu sync.Mutex
	ms []sharding.Member
}

func (v *mutableView) Members() []sharding.Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]sharding.Member(nil), v.ms...)
}

func (v *mutableView) set(ms []sharding.Member) {
	v.mu.Lock()
	v.ms = ms
	v.mu.Unlock()
}

func cluster(t *testing.T, n int) (*Client, []*fakeServer, *mutableView) {
	t.Helper()
	dial := DirectDialer{}
	view := &mutableView{}
	var servers []*fakeServer
	var members []sharding.Member
	for i := 0; i < n; i++ {
		id := string(rune('a' + i))
		f := newFake(id)
		m := sharding.Member{ID: id, Role: sharding.RolePS, Addr: id}
		f.owns = func(k PartKey) bool {
			o := sharding.Place(k.String(), view.Members(), 1)
			return len(o) > 0 && o[0].ID == m.ID
		}
		dial[id] = f
		servers = append(servers, f)
		members = append(members, m)
	}
	view.set(members)
	c, err := NewClient(ClientConfig{Members: view, Dialer: dial, RetryTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, servers, view
}

func TestClientDenseAndSparseRoundTrip(t *testing.T) {
	ctx := context.Background()
	c, servers, _ := cluster(t, 3)
	spec := VariableSpec{Name: "emb", Shape: []int64{1000, 8}, MinPartitionBytes: 1, MaxPartitionBytes: 4 * 8 * 100}
	if err := c.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if n := len(spec.Partitions()); n != 10 {
		t.Fatalf("partitions = %d, want 10", n)
	}
	grad := make([]float32, 8000)
	for i := range grad {
		grad[i] = -float32(i)
	}
	if err := c.Push(ctx, "emb", grad, 0); err != nil {
		t.Fatal(err)
	}
	// One request per server that owns something, not one per partition.
	var pushes int64
	for _, s := range servers {
		pushes += s.push.Load()
	}
	if pushes > 3 {
		t.Errorf("dense push of 10 partitions sent %d requests, want ≤ 3 (one per server)", pushes)
	}
	got := make([]float32, 8000)
	if _, err := c.Pull(ctx, "emb", got, 0); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != float32(i) {
			t.Fatalf("value %d = %v, want %v", i, v, float32(i))
		}
	}
	// Sparse rows across partitions, out of order and repeated.
	rows := []int64{999, 0, 450, 0, 101}
	dst := make([]float32, len(rows)*8)
	if _, err := c.PullMany(ctx, []PullOp{{Var: "emb", Rows: rows, Dst: dst}}, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for j, r := range rows {
		for k := 0; k < 8; k++ {
			if want := float32(r*8 + int64(k)); dst[j*8+k] != want {
				t.Fatalf("row %d col %d = %v, want %v", r, k, dst[j*8+k], want)
			}
		}
	}
	sg := make([]float32, 2*8)
	for i := range sg {
		sg[i] = 1
	}
	if err := c.PushMany(ctx, []PushOp{{Var: "emb", Rows: []int64{3, 998}, Grad: sg}}, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, "emb", got, 0); err != nil {
		t.Fatal(err)
	}
	if got[3*8] != 23 || got[998*8+7] != 998*8+7-1 || got[4*8] != 32 {
		t.Fatalf("sparse push applied wrongly: %v %v %v", got[3*8], got[998*8+7], got[4*8])
	}
}

func TestClientRejectsBadShapesBeforeSending(t *testing.T) {
	ctx := context.Background()
	c, servers, _ := cluster(t, 2)
	if err := c.CreateVariable(ctx, VariableSpec{Name: "w", Shape: []int64{4, 3}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(ctx, "w", make([]float32, 11), 0); !errors.Is(err, ErrShapeMismatch) {
		t.Errorf("short gradient: err = %v, want ErrShapeMismatch", err)
	}
	if err := c.PushMany(ctx, []PushOp{{Var: "w", Rows: []int64{4}, Grad: make([]float32, 3)}}, PushOptions{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("row out of range: err = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.Pull(ctx, "nope", make([]float32, 1), 0); !errors.Is(err, ErrUnknownVariable) {
		t.Errorf("unknown variable: err = %v, want ErrUnknownVariable", err)
	}
	if err := c.CreateVariable(ctx, VariableSpec{Name: "bad", Shape: []int64{3, 0}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("zero dimension: err = %v, want ErrInvalidArgument", err)
	}
	for _, s := range servers {
		if s.push.Load() != 0 {
			t.Errorf("server %s got a push for a request the client should have refused", s.id)
		}
	}
}

func TestClientRetriesAfterViewChange(t *testing.T) {
	ctx := context.Background()
	c, servers, view := cluster(t, 3)
	spec := VariableSpec{Name: "v", Shape: []int64{300, 4}, MinPartitionBytes: 1, MaxPartitionBytes: 4 * 4 * 10}
	if err := c.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// Server "a" leaves the view as seen by the servers first; the client's
	// stale view still routes to it and must retry after its view changes.
	all := view.Members()
	servers[0].owns = func(PartKey) bool { return false }
	done := make(chan error, 1)
	go func() {
		done <- c.Push(ctx, "v", make([]float32, 1200), 0)
	}()
	// Let the first attempt fail against the old view.
	for servers[0].push.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Recreate the moved partitions on their new owners, as migration would.
	view.set(all[1:])
	for _, s := range servers[1:] {
		s.Create(ctx, &CreateRequest{Spec: spec, Parts: ownedBy(spec, s, view)})
	}
	if err := <-done; err != nil {
		t.Fatalf("push after view change: %v", err)
	}
}

func ownedBy(spec VariableSpec, s *fakeServer, view *mutableView) []int {
	var out []int
	for i := range spec.Partitions() {
		if o := sharding.Place(PartKey{spec.Name, i}.String(), view.Members(), 1); o[0].ID == s.id {
			out = append(out, i)
		}
	}
	return out
}

func TestClientGivesUpWithClearError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := NewClient(ClientConfig{
		Members: StaticMembers{{ID: "x", Role: sharding.RolePS, Addr: "nowhere"}},
		Dialer:  DirectDialer{},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.CreateVariable(ctx, VariableSpec{Name: "w", Shape: []int64{2}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if want := "nowhere"; !contains(err.Error(), want) {
		t.Errorf("error %q does not name the unreachable server %q", err, want)
	}
}

func contains(s, sub string) bool {
	return strings.Contains(s, sub)
}

// dstRecorder passes pulls to a real Server and records, per dense part,
// whether the client offered the matching window of the caller's buffer.
type dstRecorder struct {
	*Server
	mu      sync.Mutex
	windows map[PartKey][]float32
}

func (d *dstRecorder) Pull(ctx context.Context, req *PullRequest) (*PullResponse, error) {
	d.mu.Lock()
	for _, p := range req.Parts {
		d.windows[p.Key] = p.Dst
	}
	d.mu.Unlock()
	return d.Server.Pull(ctx, req)
}

// A dense pull hands every partition's window of the caller's buffer to the
// service as Dst, so a server in the same process writes the values there
// and nothing is copied twice.
func TestClientDensePullOffersDestinationWindows(t *testing.T) {
	ctx := context.Background()
	srv, err := NewServer(ServerConfig{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := &dstRecorder{Server: srv, windows: map[PartKey][]float32{}}
	c, err := NewClient(ClientConfig{Members: StaticMembers{{ID: "a", Role: sharding.RolePS, Addr: "a"}}, Dialer: DirectDialer{"a": rec}})
	if err != nil {
		t.Fatal(err)
	}
	spec := VariableSpec{Name: "w", Shape: []int64{100, 4}, Init: Initializer{Kind: InitConstant, Value: 3}, Optimizer: OptimizerSpec{LR: 1}, MinPartitionBytes: 1, MaxPartitionBytes: 4 * 4 * 30}
	if err := c.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 400)
	if _, err := c.Pull(ctx, "w", dst, 0); err != nil {
		t.Fatal(err)
	}
	parts := spec.Partitions()
	if len(parts) < 4 {
		t.Fatalf("want several partitions, got %d", len(parts))
	}
	for i, r := range parts {
		w := rec.windows[PartKey{"w", i}]
		if !SameBuffer(w, dst[r.Start*4:r.End*4]) {
			t.Errorf("partition %d: Dst is not the caller's window [%d, %d)", i, r.Start*4, r.End*4)
		}
	}
	for i, v := range dst {
		if v != 3 {
			t.Fatalf("value %d = %v, want 3", i, v)
		}
	}
}

// Placements are remembered per view: a member that comes back at another
// address (same ID, so the same partitions) gets the requests at once.
func TestClientPlacementFollowsViewChanges(t *testing.T) {
	ctx := context.Background()
	old, moved := newFake("a"), newFake("a")
	view := &mutableView{ms: []sharding.Member{{ID: "a", Role: sharding.RolePS, Addr: "old"}}}
	c, err := NewClient(ClientConfig{Members: view, Dialer: DirectDialer{"old": old, "new": moved}, RetryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	spec := VariableSpec{Name: "v", Shape: []int64{8}}
	if err := c.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(ctx, "v", make([]float32, 8), 0); err != nil {
		t.Fatal(err)
	}
	view.set([]sharding.Member{{ID: "a", Role: sharding.RolePS, Addr: "new"}})
	moved.Create(ctx, &CreateRequest{Spec: spec, Parts: []int{0}})
	if err := c.Push(ctx, "v", make([]float32, 8), 0); err != nil {
		t.Fatal(err)
	}
	if o, n := old.push.Load(), moved.push.Load(); o != 1 || n != 1 {
		t.Errorf("pushes: %d to the old address, %d to the new; want 1 and 1", o, n)
	}
}

// PullStats.Waited is the time the server held the pull at the sync
// barrier: zero when the version is there, and within the call's duration
// when the pull waited for another worker's gradient.
func TestClientPullStatsReportServerWait(t *testing.T) {
	ctx := context.Background()
	srv, err := NewServer(ServerConfig{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := NewClient(ClientConfig{Members: StaticMembers{{ID: "a", Role: sharding.RolePS, Addr: "a"}}, Dialer: DirectDialer{"a": srv}})
	if err != nil {
		t.Fatal(err)
	}
	spec := VariableSpec{Name: "w", Shape: []int64{4}, Optimizer: OptimizerSpec{LR: 1}, Consistency: Consistency{Mode: Sync, Workers: 1}}
	if err := c.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 4)
	st := PullStats{Waited: -1}
	if _, err := c.PullMany(ctx, []PullOp{{Var: "w", Dst: dst}}, PullOptions{Stats: &st}); err != nil {
		t.Fatal(err)
	}
	if st.Waited != 0 {
		t.Errorf("pull of a ready version: Waited %v, want 0", st.Waited)
	}
	done := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		_, err := c.PullMany(ctx, []PullOp{{Var: "w", Dst: dst, MinVersion: 1}}, PullOptions{Stats: &st})
		if err != nil {
			t.Error(err)
		}
		done <- time.Since(t0)
	}()
	for srv.Stats().StalenessWaits == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := c.Push(ctx, "w", []float32{1, 1, 1, 1}, 0); err != nil {
		t.Fatal(err)
	}
	call := <-done
	if st.Waited <= 0 || st.Waited > call {
		t.Errorf("pull that waited for version 1: Waited %v, want in (0, %v]", st.Waited, call)
	}
}
