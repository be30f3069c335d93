package ps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flowps/flowps/sharding"
)

// Replicator is the optional peer-to-peer side of a parameter server that
// replicates its partitions: ps.Server implements it, and transports whose
// dialed Service also implements it carry its calls between servers (the
// Service interface itself stays unchanged, as raft added optional
// capabilities by type assertion).
type Replicator interface {
	// Replicate applies a primary's operations on a replica, in LSN order.
	Replicate(ctx context.Context, req *ReplicateRequest) (*ReplicateResponse, error)
	// Fetch reports (and, with WantState, copies) a hosted partition; with
	// Fence it first promises to follow a new primary's term.
	Fetch(ctx context.Context, req *FetchRequest) (*FetchResponse, error)
	// Install replaces a partition with a primary's copy (re-replication,
	// migration) or parks a leaving node's copy (Handoff).
	Install(ctx context.Context, req *InstallRequest) (*InstallResponse, error)
}

// ReplicateOp is one operation of a partition's replication log: an
// accepted push part as the primary applied it, at position LSN of term
// Term. A Barrier op carries no push: it asks the replica to confirm that
// it has applied everything up to LSN in Term (the primary sends it before
// acknowledging a retried push it had already applied).
type ReplicateOp struct {
	Key      PartKey
	Term     Term
	LSN      uint64
	Barrier  bool
	ClientID string
	Seq      uint64
	Worker   int
	Clock    int64
	Step     int64
	Rows     []int64
	Grad     []float32
}

// ReplicateRequest carries operations from primary From to one replica.
type ReplicateRequest struct {
	From string
	Ops  []ReplicateOp
}

// OpStatus is a replica's answer to one ReplicateOp.
type OpStatus uint8

// The replica's answers.
const (
	// OpApplied: applied now or before (a duplicate LSN is applied once).
	OpApplied OpStatus = iota + 1
	// OpNeedState: the replica does not hold the partition at the op's
	// term, or missed earlier ops; the primary must Install its state.
	OpNeedState
	// OpDeposed: the replica promised a newer term to another primary;
	// the sender is no longer the primary.
	OpDeposed
)

// String names the status.
func (s OpStatus) String() string {
	switch s {
	case OpApplied:
		return "applied"
	case OpNeedState:
		return "need-state"
	case OpDeposed:
		return "deposed"
	}
	return fmt.Sprintf("OpStatus(%d)", uint8(s))
}

// ReplicateResponse holds, per op in request order, its status and the
// replica's promised term.
type ReplicateResponse struct {
	Status   []OpStatus
	Promised []Term
}

// FetchRequest asks a host about one partition.
type FetchRequest struct {
	From string
	Key  PartKey
	// Fence, when set, asks the host to promise to follow term *Fence:
	// from then on it applies only that primary's operations and, if it
	// was the active primary, stops accepting writes. A host that promised
	// a newer term refuses (Fenced false).
	Fence *Term
	// WantState asks for a full copy of the partition.
	WantState bool
	// Nudge tells the receiver that, in the sender's view, it is the
	// partition's primary: it takes over in the background if it is not
	// active yet.
	Nudge bool
}

// FetchResponse describes the host's copy.
type FetchResponse struct {
	Hosted bool
	Active bool
	// Synced is set when the host is the active primary and every replica
	// in its view confirmed its current term. Replicas lists the ids of
	// those replicas (the primary's view of the owners after itself).
	Synced   bool
	Replicas []string
	Fenced   bool
	Promised Term
	Term     Term
	LSN      uint64
	State    *PartitionState
}

// InstallRequest gives a partition's state to a replica. A primary sends
// it with its Term: with State, the replica replaces its copy; without,
// it only relabels a copy that already is exactly (BaseTerm, BaseLSN) to
// Term (no data moves). A leaving server sends Handoff installs: the
// receiver keeps the copy, inactive, only if it is newer than its own.
type InstallRequest struct {
	From string
	// Key names the partition; a State, when present, must be of Key.
	Key      PartKey
	Term     Term
	Handoff  bool
	BaseTerm Term
	BaseLSN  uint64
	State    *PartitionState
}

// InstallResponse says whether the install was taken; if not, Promised is
// the newer term the replica follows, or NeedFull asks for a full State.
type InstallResponse struct {
	Accepted bool
	NeedFull bool
	Promised Term
}

// ReplicationConfig turns on replication, failover and migration for a
// Server. Placement over the view given to SetView decides each
// partition's owners; the first is the primary, which alone serves pulls
// and pushes, and acknowledges a push only after every other owner in its
// view applied it.
type ReplicationConfig struct {
	// Replicas is the number of copies r (the primary included). Zero
	// means 2.
	Replicas int
	// Dialer reaches peers by their member Addr; the Services it returns
	// must implement Replicator. Required.
	Dialer Dialer
	// Timeout bounds one peer call (replicate, fence, install). A peer that
	// does not answer in time fails the push (not acknowledged; the client
	// retries); the peer is dropped only when the membership view drops
	// it. Zero means 10 s.
	Timeout time.Duration
	// GapWait is how long a replica holds an op that arrived ahead of a
	// missing earlier one before asking for the primary's state instead.
	// Zero means 2 s.
	GapWait time.Duration
	// StableAfter is how long a view must last, with a quorum, to become
	// the stable membership that later views need a majority of. Zero
	// means 3 s. Negative disables the quorum rule.
	StableAfter time.Duration
}

func (c *ReplicationConfig) validate() error {
	if c.Dialer == nil {
		return Errorf(ErrInvalidArgument, "replication config: Dialer is nil")
	}
	if c.Replicas == 0 {
		c.Replicas = 2
	}
	if c.Replicas < 1 {
		return Errorf(ErrInvalidArgument, "replication config: Replicas %d < 1", c.Replicas)
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.GapWait <= 0 {
		c.GapWait = 2 * time.Second
	}
	if c.StableAfter == 0 {
		c.StableAfter = 3 * time.Second
	}
	return nil
}

// ReplicationStats are cumulative replication counters.
type ReplicationStats struct {
	Takeovers     uint64 // partitions this server became the active primary of
	Installs      uint64 // full states sent to replicas
	InstallBytes  uint64 // float32 bytes in those states
	Relabels      uint64 // replicas brought to a new term without a copy
	Handoffs      uint64 // states handed over when leaving
	OpsSent       uint64 // ops forwarded to replicas
	OpsApplied    uint64 // ops applied as a replica
	Dropped       uint64 // copies dropped after placement moved them away
	QuorumRejects uint64 // requests refused for lack of a quorum
}

type replication struct {
	s   *Server
	cfg ReplicationConfig

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	view      sharding.View
	viewAt    time.Time
	stable    map[string]bool // the last stable membership's ps ids
	leaving   bool
	peers     map[string]Service
	promises  map[PartKey]Term // promises made for partitions not hosted
	absent    map[PartKey]uint64
	takeovers map[PartKey]*flight
	installs  map[[2]string]*flight // (key, peer addr)
	reconcile context.CancelFunc
	stopped   bool // set by close: no new goroutines
	st        ReplicationStats
}

// goLocked starts fn as a goroutine owned by r (close waits for it);
// r.mu must be held. It reports false, starting nothing, after close.
func (r *replication) goLocked(fn func()) bool {
	if r.stopped {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
	return true
}

// flight is one in-progress single-flight call.
type flight struct {
	done chan struct{}
	err  error
}

func newReplication(s *Server, cfg ReplicationConfig) *replication {
	ctx, cancel := context.WithCancel(context.Background())
	return &replication{
		s: s, cfg: cfg, ctx: ctx, cancel: cancel,
		peers:     map[string]Service{},
		promises:  map[PartKey]Term{},
		absent:    map[PartKey]uint64{},
		takeovers: map[PartKey]*flight{},
		installs:  map[[2]string]*flight{},
	}
}

func (r *replication) close() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	for a, p := range r.peers {
		p.Close()
		delete(r.peers, a)
	}
	r.mu.Unlock()
}

// ReplicationStats returns the replication counters (zero without
// replication).
func (s *Server) ReplicationStats() ReplicationStats {
	if s.repl == nil {
		return ReplicationStats{}
	}
	s.repl.mu.Lock()
	defer s.repl.mu.Unlock()
	return s.repl.st
}

// SetView gives a replicating server the current membership view. The
// server deactivates partitions it no longer is the primary of, takes over
// (in the background) those it now is the primary of, re-replicates its
// active partitions to their owners in the new view, tells the new primary
// of each partition it holds but no longer leads, and drops copies that
// placement moved away once their primary is active. When ps members
// (re)appear in the view, the server also takes over again the partitions
// it still leads, so that its term is confirmed with (and the newest copy
// adopted from) every member before it serves them. Without replication
// it sets ownership to "I am the primary".
func (s *Server) SetView(v sharding.View) {
	if s.repl == nil {
		members, self := v.Members, s.cfg.ID
		s.SetOwns(func(k PartKey) bool {
			o := sharding.Place(k.String(), members, 1)
			return len(o) > 0 && o[0].ID == self
		})
		return
	}
	r := s.repl
	r.mu.Lock()
	r.promoteStableLocked(time.Now())
	if r.stable != nil && slices.Equal(r.view.PS(), v.PS()) {
		// Only trainers came or went: placement is unchanged, and so is
		// everything below (the running reconcile pass goes on).
		r.view = sharding.View{Epoch: v.Epoch, Members: slices.Clone(v.Members)}
		r.mu.Unlock()
		return
	}
	prev, first := psSet(r.view), r.stable == nil
	r.view = sharding.View{Epoch: v.Epoch, Members: slices.Clone(v.Members)}
	r.viewAt = time.Now()
	if r.stable == nil {
		r.stable = psSet(r.view)
	}
	// Members that (re)appear were not fenced by the takeovers that made
	// this server primary: a member returning from a network partition may
	// hold a newer term and copy. Every partition this server leads is
	// taken over again (fencing the whole new view and adopting the newest
	// copy by (term, LSN)) before it serves again.
	joined := false
	for _, m := range r.view.PS() {
		if !prev[m.ID] {
			joined = !first
		}
	}
	clear(r.absent)
	if r.reconcile != nil {
		r.reconcile()
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.reconcile = cancel
	view := r.view
	r.mu.Unlock()

	for _, p := range s.hosted() {
		owners := r.owners(view, p.key)
		lead := len(owners) > 0 && owners[0].ID == s.cfg.ID
		if !lead || joined {
			p.mu.Lock()
			if p.active {
				p.setActiveLocked(false)
				if lead {
					s.log.Info("members joined: confirming term again", "key", p.key.String(), "epoch", view.Epoch)
				} else {
					s.log.Info("no longer primary", "key", p.key.String(), "epoch", view.Epoch)
				}
			}
			p.mu.Unlock()
		}
	}
	r.mu.Lock()
	r.goLocked(func() { r.reconcileLoop(ctx, view) })
	r.mu.Unlock()
}

func psSet(v sharding.View) map[string]bool {
	out := map[string]bool{}
	for _, m := range v.PS() {
		out[m.ID] = true
	}
	return out
}

// promoteStableLocked makes the current view the stable membership when it
// has lasted StableAfter with a quorum.
func (r *replication) promoteStableLocked(now time.Time) {
	if r.stable == nil || r.cfg.StableAfter < 0 {
		return
	}
	if now.Sub(r.viewAt) >= r.cfg.StableAfter && r.quorumLocked() {
		r.stable = psSet(r.view)
	}
}

// quorumLocked reports whether the view holds a majority of the stable
// membership.
func (r *replication) quorumLocked() bool {
	if r.cfg.StableAfter < 0 || r.stable == nil {
		return true
	}
	n := 0
	for _, m := range r.view.PS() {
		if r.stable[m.ID] {
			n++
		}
	}
	return 2*n > len(r.stable)
}

// stableInView reports whether every member of the stable membership is in
// the view, so that no copy of a partition can be hidden behind a network
// partition or a not yet detected crash.
func (r *replication) stableInView() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.StableAfter < 0 {
		return true
	}
	r.promoteStableLocked(time.Now())
	in := psSet(r.view)
	for id := range r.stable {
		if !in[id] {
			return false
		}
	}
	return true
}

// writable checks that this server may serve requests now.
func (r *replication) writable(op string, key PartKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leaving {
		return Errorf(ErrNotOwner, "%s %s on %s: leaving the cluster", op, key, r.s.cfg.ID)
	}
	r.promoteStableLocked(time.Now())
	if !r.quorumLocked() {
		r.st.QuorumRejects++
		return Errorf(ErrUnavailable, "%s %s on %s: view of %d ps lacks a majority of the stable membership of %d", op, key, r.s.cfg.ID, len(r.view.PS()), len(r.stable))
	}
	return nil
}

func (r *replication) owners(v sharding.View, key PartKey) []sharding.Member {
	return sharding.Place(key.String(), v.Members, r.cfg.Replicas)
}

func (r *replication) currentView() sharding.View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view
}

// peer returns a Replicator for a member's address.
func (r *replication) peer(ctx context.Context, addr string) (Replicator, error) {
	r.mu.Lock()
	svc, ok := r.peers[addr]
	r.mu.Unlock()
	if !ok {
		var err error
		svc, err = r.cfg.Dialer.Dial(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("%w: dial peer %s: %w", ErrUnavailable, addr, err)
		}
		r.mu.Lock()
		if old, ok := r.peers[addr]; ok {
			svc.Close()
			svc = old
		} else {
			r.peers[addr] = svc
		}
		r.mu.Unlock()
	}
	rep, ok := svc.(Replicator)
	if !ok {
		return nil, Errorf(ErrInvalidArgument, "peer %s: transport %T does not carry replication calls", addr, svc)
	}
	return rep, nil
}

func (r *replication) dropPeer(addr string) {
	r.mu.Lock()
	svc, ok := r.peers[addr]
	delete(r.peers, addr)
	r.mu.Unlock()
	if ok {
		svc.Close()
	}
}

// call runs fn against the peer at addr with the per-call timeout.
func call[T any](ctx context.Context, r *replication, addr string, fn func(context.Context, Replicator) (T, error)) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	rep, err := r.peer(ctx, addr)
	if err != nil {
		return zero, err
	}
	out, err := fn(ctx, rep)
	if err != nil {
		if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
			r.dropPeer(addr)
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("%w: peer %s did not answer within %v: %w", ErrUnavailable, addr, r.cfg.Timeout, err)
		}
		return zero, err
	}
	return out, nil
}

// hosted lists the hosted partitions.
func (s *Server) hosted() []*partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*partition, 0, len(s.parts))
	for _, p := range s.parts {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *partition) int { return compareKeys(a.key, b.key) })
	return out
}

func (s *Server) part(key PartKey) *partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.parts[key]
}

// activePart returns the partition if this server is its active primary,
// taking it over first when placement says it should lead it. spec, when
// non-nil, creates the partition if no member hosts it (Create).
func (r *replication) activePart(ctx context.Context, op string, key PartKey, spec *VariableSpec) (*partition, error) {
	if err := r.writable(op, key); err != nil {
		return nil, err
	}
	if p := r.s.part(key); p != nil {
		p.mu.Lock()
		active := p.active
		p.mu.Unlock()
		if active {
			return p, nil
		}
	}
	view := r.currentView()
	owners := r.owners(view, key)
	if len(owners) == 0 || owners[0].ID != r.s.cfg.ID {
		return nil, Errorf(ErrNotOwner, "%s %s on %s", op, key, r.s.cfg.ID)
	}
	if spec == nil {
		r.mu.Lock()
		e, ok := r.absent[key]
		r.mu.Unlock()
		if ok && e == view.Epoch {
			return nil, Errorf(ErrUnknownVariable, "%s %s on %s: no member hosts the partition", op, key, r.s.cfg.ID)
		}
	}
	if err := r.takeover(ctx, key, spec); err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", op, key, r.s.cfg.ID, err)
	}
	p := r.s.part(key)
	if p == nil {
		return nil, Errorf(ErrNotOwner, "%s %s on %s: lost during takeover", op, key, r.s.cfg.ID)
	}
	return p, nil
}

// takeover makes this server the active primary of key: it fences every
// other ps member of its view with a new term, adopts the most recent copy
// any of them holds (or creates the partition from spec when none does),
// and activates. Concurrent calls for one key share one attempt.
func (r *replication) takeover(ctx context.Context, key PartKey, spec *VariableSpec) error {
	r.mu.Lock()
	f, ok := r.takeovers[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		started := r.goLocked(func() {
			tctx, cancel := context.WithTimeout(r.ctx, 3*r.cfg.Timeout)
			f.err = r.doTakeover(tctx, key, spec)
			cancel()
			r.mu.Lock()
			delete(r.takeovers, key)
			r.mu.Unlock()
			close(f.done)
		})
		if started {
			r.takeovers[key] = f
		} else {
			f.err = fmt.Errorf("takeover %s on %s: %w", key, r.s.cfg.ID, ErrClosed)
			close(f.done)
		}
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil && spec != nil && errors.Is(f.err, ErrUnknownVariable) {
			// A takeover without a spec found nothing; this caller can
			// create the partition.
			return r.takeover(ctx, key, spec)
		}
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *replication) doTakeover(ctx context.Context, key PartKey, spec *VariableSpec) error {
	s := r.s
	self := s.cfg.ID
	view := r.currentView()
	owners := r.owners(view, key)
	if len(owners) == 0 || owners[0].ID != self {
		return Errorf(ErrNotOwner, "takeover: placement moved %s away", key)
	}
	var others []sharding.Member
	for _, m := range view.PS() {
		if m.ID != self {
			others = append(others, m)
		}
	}
	// Our own promise: the hosted copy's, or one made while not hosting.
	promised := r.promisedFor(key)
	var resps []*FetchResponse
	var term Term
	for attempt := 0; ; attempt++ {
		term = Term{N: promised.N + 1, ID: self}
		if !r.promiseLocal(key, term) {
			promised = r.promisedFor(key)
			continue
		}
		var err error
		resps, err = r.fenceAll(ctx, others, key, term)
		if err != nil {
			return err
		}
		higher := false
		for _, fr := range resps {
			if !fr.Fenced {
				higher = true
				if promised.Less(fr.Promised) {
					promised = fr.Promised
				}
			}
		}
		if !higher {
			break
		}
		if attempt == 3 {
			return Errorf(ErrNotOwner, "takeover %s: other members keep promising newer terms (%v)", key, promised)
		}
	}
	// Pick the most recent copy: ours or a peer's.
	best := -1
	var bestTerm Term
	var bestLSN uint64
	local := s.part(key)
	if local != nil {
		local.mu.Lock()
		bestTerm, bestLSN = local.term, local.lsn
		local.mu.Unlock()
	}
	for i, fr := range resps {
		if fr.Hosted && (local == nil && best < 0 || newer(fr.Term, fr.LSN, bestTerm, bestLSN)) {
			best, bestTerm, bestLSN = i, fr.Term, fr.LSN
		}
	}
	switch {
	case best >= 0:
		fr, err := call(ctx, r, others[best].Addr, func(ctx context.Context, rep Replicator) (*FetchResponse, error) {
			return rep.Fetch(ctx, &FetchRequest{From: self, Key: key, Fence: &term, WantState: true})
		})
		if err != nil {
			return fmt.Errorf("takeover %s: fetch from %s: %w", key, others[best].ID, err)
		}
		if !fr.Fenced || fr.State == nil {
			return Errorf(ErrNotOwner, "takeover %s: %s no longer follows term %v", key, others[best].ID, term)
		}
		np, err := partitionFromState(fr.State)
		if err != nil {
			return fmt.Errorf("takeover %s: state from %s: %w", key, others[best].ID, err)
		}
		s.mu.Lock()
		if p, ok := s.parts[key]; ok {
			p.mu.Lock()
			p.installLocked(np)
			p.mu.Unlock()
		} else {
			s.parts[key] = np
		}
		s.mu.Unlock()
		s.log.Info("adopted partition", "key", key.String(), "from", others[best].ID, "term", fr.State.Term.String(), "lsn", fr.State.LSN)
	case local == nil:
		if spec != nil && !r.stableInView() {
			return Errorf(ErrUnavailable, "takeover %s: no reachable member hosts it and members of the stable membership are missing; not creating a fresh copy that could shadow theirs", key)
		}
		if spec == nil {
			r.mu.Lock()
			r.absent[key] = view.Epoch
			r.mu.Unlock()
			return Errorf(ErrUnknownVariable, "takeover %s: no member hosts the partition", key)
		}
		ranges := spec.Partitions()
		np, err := newPartition(spec, key.Index, ranges[key.Index])
		if err != nil {
			return err
		}
		s.mu.Lock()
		if _, ok := s.parts[key]; !ok {
			s.parts[key] = np
		}
		s.mu.Unlock()
	}
	p := s.part(key)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.promised.Less(term) {
		p.promised = term
	}
	if p.promised != term {
		return Errorf(ErrNotOwner, "takeover %s: fenced by %v while taking over", key, p.promised)
	}
	p.baseTerm, p.baseLSN = p.term, p.lsn
	p.term = term
	p.setActiveLocked(true)
	r.mu.Lock()
	delete(r.promises, key)
	r.st.Takeovers++
	r.mu.Unlock()
	s.log.Info("primary", "key", key.String(), "term", term.String(), "lsn", p.lsn, "version", p.cm.Version())
	return nil
}

// promisedFor is the term this server promised for key.
func (r *replication) promisedFor(key PartKey) Term {
	if p := r.s.part(key); p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.promised
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.promises[key]
}

// promiseLocal promises term for key on this server; false if a newer term
// was promised.
func (r *replication) promiseLocal(key PartKey, term Term) bool {
	if p := r.s.part(key); p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if term.Less(p.promised) {
			return false
		}
		p.promised = term
		if term.ID != r.s.cfg.ID {
			p.setActiveLocked(false)
		}
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if term.Less(r.promises[key]) {
		return false
	}
	r.promises[key] = term
	return true
}

// fenceAll fences every member with term, in parallel. Any member that
// does not answer fails the takeover: it may hold acknowledged updates, so
// the takeover waits until it answers or the view drops it.
func (r *replication) fenceAll(ctx context.Context, members []sharding.Member, key PartKey, term Term) ([]*FetchResponse, error) {
	out := make([]*FetchResponse, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = call(ctx, r, m.Addr, func(ctx context.Context, rep Replicator) (*FetchResponse, error) {
				return rep.Fetch(ctx, &FetchRequest{From: r.s.cfg.ID, Key: key, Fence: &term})
			})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("fence %s on %s: %w", key, m.ID, errs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	return out, nil
}

// Fetch implements Replicator.
func (s *Server) Fetch(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
	r := s.repl
	if r == nil {
		return nil, Errorf(ErrInvalidArgument, "fetch on %s: replication is off", s.cfg.ID)
	}
	if req == nil {
		return nil, Errorf(ErrInvalidArgument, "fetch on %s: nil request", s.cfg.ID)
	}
	if err := s.checkOpen("fetch"); err != nil {
		return nil, err
	}
	resp := s.fetchLocal(req)
	// Nudge after the fence above took effect, so that a primary the
	// sender fenced with a newer term it knows takes over again (adopting
	// the newest copy) instead of going on serving its stale one.
	if req.Nudge {
		r.kickTakeover(req.Key, "nudge", req.From)
	}
	return resp, nil
}

// kickTakeover starts, in the background, a takeover of key if placement
// in the current view makes this server its primary and it is not active.
func (r *replication) kickTakeover(key PartKey, why, from string) {
	s := r.s
	view := r.currentView()
	if o := r.owners(view, key); len(o) == 0 || o[0].ID != s.cfg.ID {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.goLocked(func() {
		tctx, cancel := context.WithTimeout(r.ctx, 3*r.cfg.Timeout)
		defer cancel()
		if _, err := r.activePart(tctx, why, key, nil); err != nil {
			s.log.Debug("takeover after "+why, "key", key.String(), "from", from, "err", err)
		}
	})
}

// fetchLocal answers a Fetch from this server's copy, fencing it first.
func (s *Server) fetchLocal(req *FetchRequest) *FetchResponse {
	r := s.repl
	p := s.part(req.Key)
	resp := &FetchResponse{}
	if p == nil {
		resp.Fenced = true
		if req.Fence != nil {
			resp.Fenced = r.promiseLocal(req.Key, *req.Fence)
		}
		resp.Promised = r.promisedFor(req.Key)
		return resp
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	resp.Hosted = true
	resp.Fenced = true
	if f := req.Fence; f != nil {
		if f.Less(p.promised) {
			resp.Fenced = false
		} else {
			p.promised = *f
			if f.ID != s.cfg.ID && p.active {
				p.setActiveLocked(false)
				s.log.Info("fenced: no longer primary", "key", p.key.String(), "by", f.String())
			}
		}
	}
	resp.Active, resp.Promised, resp.Term, resp.LSN = p.active, p.promised, p.term, p.lsn
	if p.active {
		resp.Synced = true
		owners := r.owners(r.currentView(), p.key)
		for _, m := range owners[min(1, len(owners)):] {
			resp.Replicas = append(resp.Replicas, m.ID)
			if p.synced[m.Addr] != p.term {
				resp.Synced = false
			}
		}
	}
	if req.WantState && resp.Fenced {
		resp.State = p.snapshotLocked()
	}
	return resp
}

func (s *Server) checkOpen(op string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("%s on %s: %w", op, s.cfg.ID, ErrClosed)
	}
	return nil
}

// Install implements Replicator.
func (s *Server) Install(ctx context.Context, req *InstallRequest) (*InstallResponse, error) {
	r := s.repl
	if r == nil {
		return nil, Errorf(ErrInvalidArgument, "install on %s: replication is off", s.cfg.ID)
	}
	if req == nil {
		return nil, Errorf(ErrInvalidArgument, "install on %s: nil request", s.cfg.ID)
	}
	if err := s.checkOpen("install"); err != nil {
		return nil, err
	}
	var np *partition
	var key PartKey
	if req.State != nil {
		var err error
		if np, err = partitionFromState(req.State); err != nil {
			return nil, fmt.Errorf("install on %s from %s: %w", s.cfg.ID, req.From, err)
		}
		key = np.key
		if key != req.Key {
			return nil, Errorf(ErrInvalidArgument, "install %s on %s from %s: state of %s", req.Key, s.cfg.ID, req.From, key)
		}
	} else if req.Handoff {
		return nil, Errorf(ErrInvalidArgument, "install on %s from %s: handoff without state", s.cfg.ID, req.From)
	}
	if req.Handoff {
		return s.installHandoff(np), nil
	}
	if np == nil {
		return s.relabel(req), nil
	}
	// A primary's full state: take it unless we promised a newer term.
	if prom := r.promisedFor(key); req.Term.Less(prom) {
		return &InstallResponse{Promised: prom}, nil
	}
	np.term, np.promised = req.Term, req.Term
	s.mu.Lock()
	p, ok := s.parts[key]
	if !ok {
		s.parts[key] = np
		s.mu.Unlock()
		r.mu.Lock()
		delete(r.promises, key)
		r.mu.Unlock()
		s.log.Debug("installed replica", "key", key.String(), "from", req.From, "term", req.Term.String(), "lsn", np.lsn)
		return &InstallResponse{Accepted: true}, nil
	}
	s.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.Term.Less(p.promised) {
		return &InstallResponse{Promised: p.promised}, nil
	}
	p.installLocked(np)
	p.promised = req.Term
	p.setActiveLocked(false)
	s.drainPendingLocked(p)
	p.wakeLocked()
	s.log.Debug("installed replica", "key", key.String(), "from", req.From, "term", req.Term.String(), "lsn", np.lsn)
	return &InstallResponse{Accepted: true}, nil
}

// relabel moves a copy that is exactly (BaseTerm, BaseLSN) to Term.
func (s *Server) relabel(req *InstallRequest) *InstallResponse {
	key := req.Key
	p := s.part(key)
	if p == nil {
		return &InstallResponse{NeedFull: true, Promised: s.repl.promisedFor(key)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.Term.Less(p.promised) {
		return &InstallResponse{Promised: p.promised}
	}
	if p.term != req.BaseTerm || p.lsn != req.BaseLSN {
		return &InstallResponse{NeedFull: true, Promised: p.promised}
	}
	p.term, p.promised = req.Term, req.Term
	p.setActiveLocked(false)
	s.drainPendingLocked(p)
	p.wakeLocked()
	return &InstallResponse{Accepted: true}
}

// installHandoff keeps a leaving server's copy if it is newer than ours.
func (s *Server) installHandoff(np *partition) *InstallResponse {
	s.mu.Lock()
	p, ok := s.parts[np.key]
	if !ok {
		s.repl.mu.Lock()
		np.promised = s.repl.promises[np.key]
		s.repl.mu.Unlock()
		if np.promised.Less(np.term) {
			np.promised = np.term
		}
		s.parts[np.key] = np
		s.mu.Unlock()
		s.repl.mu.Lock()
		s.repl.st.Handoffs++
		s.repl.mu.Unlock()
		return &InstallResponse{Accepted: true}
	}
	s.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active || !newer(np.term, np.lsn, p.term, p.lsn) {
		return &InstallResponse{Promised: p.promised}
	}
	promised := p.promised
	p.installLocked(np)
	if p.promised.Less(promised) {
		p.promised = promised
	}
	s.repl.mu.Lock()
	s.repl.st.Handoffs++
	s.repl.mu.Unlock()
	return &InstallResponse{Accepted: true}
}

// Replicate implements Replicator.
func (s *Server) Replicate(ctx context.Context, req *ReplicateRequest) (*ReplicateResponse, error) {
	r := s.repl
	if r == nil {
		return nil, Errorf(ErrInvalidArgument, "replicate on %s: replication is off", s.cfg.ID)
	}
	if req == nil {
		return nil, Errorf(ErrInvalidArgument, "replicate on %s: nil request", s.cfg.ID)
	}
	if err := s.checkOpen("replicate"); err != nil {
		return nil, err
	}
	resp := &ReplicateResponse{Status: make([]OpStatus, len(req.Ops)), Promised: make([]Term, len(req.Ops))}
	for i := range req.Ops {
		st, prom, err := s.replicateOp(ctx, &req.Ops[i])
		if err != nil {
			return nil, fmt.Errorf("replicate %s lsn %d on %s from %s: %w", req.Ops[i].Key, req.Ops[i].LSN, s.cfg.ID, req.From, err)
		}
		resp.Status[i], resp.Promised[i] = st, prom
	}
	return resp, nil
}

func (s *Server) replicateOp(ctx context.Context, op *ReplicateOp) (OpStatus, Term, error) {
	p := s.part(op.Key)
	if p == nil {
		prom := s.repl.promisedFor(op.Key)
		if op.Term.Less(prom) {
			return OpDeposed, prom, nil
		}
		return OpNeedState, prom, nil
	}
	gap := time.NewTimer(s.repl.cfg.GapWait)
	defer gap.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if op.Term.Less(p.promised) {
			return OpDeposed, p.promised, nil
		}
		if p.promised.Less(op.Term) || p.term != op.Term {
			// Not yet installed or relabelled for this term.
			if p.term != op.Term && !op.Barrier && op.LSN > p.lsn+1 {
				p.addPendingLocked(op)
			}
			return OpNeedState, p.promised, nil
		}
		if op.LSN <= p.lsn {
			return OpApplied, p.promised, nil
		}
		if !op.Barrier {
			if op.LSN == p.lsn+1 {
				if err := s.applyOpLocked(p, op); err != nil {
					s.log.Error("replica apply failed; asking for state", "key", p.key.String(), "lsn", op.LSN, "err", err)
					return OpNeedState, p.promised, nil
				}
				s.drainPendingLocked(p)
				p.wakeLocked()
				return OpApplied, p.promised, nil
			}
			p.addPendingLocked(op)
		}
		// Wait for the ops before this one.
		wake := p.wakeCh()
		p.mu.Unlock()
		select {
		case <-wake:
			p.mu.Lock()
		case <-gap.C:
			p.mu.Lock()
			if op.LSN <= p.lsn && p.term == op.Term {
				return OpApplied, p.promised, nil
			}
			return OpNeedState, p.promised, nil
		case <-ctx.Done():
			p.mu.Lock()
			return 0, Term{}, ctx.Err()
		}
	}
}

// addPendingLocked keeps a copy of an op that arrived early.
func (p *partition) addPendingLocked(op *ReplicateOp) {
	if p.pending == nil {
		p.pending = map[uint64]*ReplicateOp{}
	}
	if _, ok := p.pending[op.LSN]; ok {
		return
	}
	c := *op
	c.Rows = slices.Clone(op.Rows)
	c.Grad = slices.Clone(op.Grad)
	p.pending[op.LSN] = &c
}

// drainPendingLocked applies buffered ops that now follow the log, and
// forgets those that can no longer apply.
func (s *Server) drainPendingLocked(p *partition) {
	for {
		op, ok := p.pending[p.lsn+1]
		if !ok || op.Term != p.term {
			break
		}
		delete(p.pending, op.LSN)
		if err := s.applyOpLocked(p, op); err != nil {
			s.log.Error("replica apply of buffered op failed", "key", p.key.String(), "lsn", op.LSN, "err", err)
			break
		}
	}
	for l, op := range p.pending {
		if l <= p.lsn || op.Term.Less(p.promised) {
			delete(p.pending, l)
		}
	}
}

// wakeCh returns a channel closed at the partition's next log change.
func (p *partition) wakeCh() chan struct{} {
	if p.wake == nil {
		p.wake = make(chan struct{})
	}
	return p.wake
}

func (p *partition) wakeLocked() {
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
}

// applyOpLocked applies a replicated op exactly as the primary did.
func (s *Server) applyOpLocked(p *partition, op *ReplicateOp) error {
	ev := PushEvent{Worker: op.Worker, Step: op.Step, Clock: op.Clock, Rows: op.Rows, Grad: op.Grad}
	res, err := p.cm.Push(ev)
	if err != nil {
		return err
	}
	if up := res.Update; up != nil {
		if up.Rows == nil {
			err = p.opt.ApplyDense(p.values, up.Grad)
		} else {
			err = p.opt.ApplySparse(p.values, p.rowSize, up.Rows, up.Grad)
		}
		if err != nil {
			return err
		}
	}
	p.lsn = op.LSN
	p.term = op.Term
	if op.ClientID != "" {
		w := p.dedup[op.ClientID]
		if w == nil {
			w = &seqWindow{seen: map[uint64]struct{}{}}
			p.dedup[op.ClientID] = w
		}
		w.add(op.Seq, s.cfg.DedupWindow)
	}
	for _, id := range res.Released {
		if ch, ok := p.waiters[id]; ok {
			close(ch)
			delete(p.waiters, id)
		}
	}
	s.repl.mu.Lock()
	s.repl.st.OpsApplied++
	s.repl.mu.Unlock()
	return nil
}
