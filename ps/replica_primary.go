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

// lookupActive resolves keys to partitions this server is the active
// primary of, taking them over where placement says it should lead.
func (r *replication) lookupActive(ctx context.Context, op string, keys []PartKey) ([]*partition, error) {
	s := r.s
	if len(keys) > s.cfg.MaxPartsPerRequest {
		return nil, Errorf(ErrTooLarge, "%s on %s: %d parts, at most %d", op, s.cfg.ID, len(keys), s.cfg.MaxPartsPerRequest)
	}
	if err := s.checkOpen(op); err != nil {
		return nil, err
	}
	out := make([]*partition, len(keys))
	for i, k := range keys {
		p, err := r.activePart(ctx, op, k, nil)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// create hosts the partitions as their active primary (taking over any copy
// another member holds, or creating fresh ones) and waits until every
// replica in view holds them.
func (r *replication) create(ctx context.Context, spec *VariableSpec, parts []int) (*CreateResponse, error) {
	s := r.s
	if err := s.checkOpen("create"); err != nil {
		return nil, err
	}
	resp := &CreateResponse{Versions: make([]int64, len(parts))}
	var barriers []ReplicateOp
	for j, i := range parts {
		key := PartKey{spec.Name, i}
		p, err := r.activePart(ctx, "create", key, spec)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		d := specDiff(p.spec, spec)
		resp.Versions[j] = p.cm.Version()
		barriers = append(barriers, ReplicateOp{Key: key, Term: p.term, LSN: p.lsn, Barrier: true})
		p.mu.Unlock()
		if d != "" {
			return nil, Errorf(ErrSpecMismatch, "create %s on %s: %s", key, s.cfg.ID, d)
		}
	}
	if err := r.replicate(ctx, barriers); err != nil {
		return nil, fmt.Errorf("create %s on %s: %w", spec.Name, s.cfg.ID, err)
	}
	return resp, nil
}

// replicate sends ops to every replica of their partitions in the current
// view, in parallel, and returns when all applied them; a replica missing
// the partition or earlier ops first gets the primary's state. It fails
// with ErrNotOwner when a replica follows a newer primary, and with
// ErrUnavailable when a replica cannot be reached.
func (r *replication) replicate(ctx context.Context, ops []ReplicateOp) error {
	view := r.currentView()
	type target struct {
		m   sharding.Member
		ops []ReplicateOp
	}
	byPeer := map[string]*target{}
	var order []string
	for _, op := range ops {
		owners := r.owners(view, op.Key)
		for _, m := range owners[min(1, len(owners)):] {
			t := byPeer[m.Addr]
			if t == nil {
				t = &target{m: m}
				byPeer[m.Addr] = t
				order = append(order, m.Addr)
			}
			t.ops = append(t.ops, op)
		}
	}
	if len(byPeer) == 0 {
		return nil
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, addr := range order {
		t := byPeer[addr]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.sendOps(ctx, t.m, t.ops)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sendOps forwards ops to one replica until it applied them all.
func (r *replication) sendOps(ctx context.Context, m sharding.Member, ops []ReplicateOp) error {
	self := r.s.cfg.ID
	for round := 0; ; round++ {
		resp, err := call(ctx, r, m.Addr, func(ctx context.Context, rep Replicator) (*ReplicateResponse, error) {
			return rep.Replicate(ctx, &ReplicateRequest{From: self, Ops: ops})
		})
		if err != nil {
			return r.peerErr("replicate to", m, err)
		}
		if len(resp.Status) != len(ops) || len(resp.Promised) != len(ops) {
			return Errorf(ErrUnavailable, "replicate to %s: %d answers for %d ops", m.ID, len(resp.Status), len(ops))
		}
		r.mu.Lock()
		r.st.OpsSent += uint64(len(ops))
		r.mu.Unlock()
		var again []ReplicateOp
		need := map[PartKey]bool{}
		for i, st := range resp.Status {
			op := ops[i]
			switch st {
			case OpApplied:
			case OpDeposed:
				r.depose(op.Key, resp.Promised[i])
				return Errorf(ErrNotOwner, "replicate %s to %s: it follows newer primary %v", op.Key, m.ID, resp.Promised[i])
			case OpNeedState:
				again = append(again, op)
				need[op.Key] = true
			default:
				return Errorf(ErrUnavailable, "replicate %s to %s: unknown answer %v", op.Key, m.ID, st)
			}
		}
		if len(again) == 0 {
			r.markSynced(ops, m.Addr)
			return nil
		}
		if round == 3 {
			return Errorf(ErrUnavailable, "replicate to %s: %d ops still unapplied after installing state", m.ID, len(again))
		}
		for key := range need {
			if err := r.ensureReplica(ctx, key, m); err != nil {
				return err
			}
		}
		ops = again
	}
}

// markSynced records that replica addr applied every op of ops' terms.
func (r *replication) markSynced(ops []ReplicateOp, addr string) {
	for _, op := range ops {
		p := r.s.part(op.Key)
		if p == nil {
			continue
		}
		p.mu.Lock()
		if p.active && p.term == op.Term {
			if p.synced == nil {
				p.synced = map[string]Term{}
			}
			p.synced[addr] = op.Term
		}
		p.mu.Unlock()
	}
}

func (r *replication) peerErr(what string, m sharding.Member, err error) error {
	err = fmt.Errorf("%s %s: %w", what, m.ID, err)
	if errors.Is(err, ErrNotOwner) || errors.Is(err, ErrUnavailable) {
		return err
	}
	// Whatever went wrong on the way to a replica, the push is not
	// acknowledged and the client may retry it.
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// depose records that another primary took over key.
func (r *replication) depose(key PartKey, promised Term) {
	p := r.s.part(key)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.promised.Less(promised) {
		p.promised = promised
	}
	if p.active && p.promised.ID != r.s.cfg.ID {
		p.setActiveLocked(false)
		r.s.log.Info("deposed", "key", key.String(), "by", promised.String())
	}
}

// ensureReplica brings replica m to this primary's term for key: by
// relabelling when it holds exactly the copy this server took over, else by
// installing a full snapshot. Concurrent calls for one (key, replica)
// share one attempt.
func (r *replication) ensureReplica(ctx context.Context, key PartKey, m sharding.Member) error {
	fk := [2]string{key.String(), m.Addr}
	r.mu.Lock()
	f, ok := r.installs[fk]
	if !ok {
		f = &flight{done: make(chan struct{})}
		started := r.goLocked(func() {
			ictx, cancel := context.WithTimeout(r.ctx, 6*r.cfg.Timeout)
			f.err = r.doInstall(ictx, key, m)
			cancel()
			r.mu.Lock()
			delete(r.installs, fk)
			r.mu.Unlock()
			close(f.done)
		})
		if started {
			r.installs[fk] = f
		} else {
			f.err = fmt.Errorf("install %s to %s: %w", key, m.ID, ErrClosed)
			close(f.done)
		}
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *replication) doInstall(ctx context.Context, key PartKey, m sharding.Member) error {
	s := r.s
	p := s.part(key)
	if p == nil {
		return Errorf(ErrNotOwner, "install %s to %s: not hosted here", key, m.ID)
	}
	p.mu.Lock()
	if !p.active {
		p.mu.Unlock()
		return Errorf(ErrNotOwner, "install %s to %s: no longer primary", key, m.ID)
	}
	term, baseTerm, baseLSN := p.term, p.baseTerm, p.baseLSN
	p.mu.Unlock()
	answer := func(resp *InstallResponse, err error) (bool, error) {
		if err != nil {
			return false, r.peerErr("install to", m, err)
		}
		if resp.Accepted {
			return true, nil
		}
		if term.Less(resp.Promised) {
			r.depose(key, resp.Promised)
			return false, Errorf(ErrNotOwner, "install %s to %s: it follows newer primary %v", key, m.ID, resp.Promised)
		}
		return false, nil
	}
	if baseTerm != (Term{}) || baseLSN > 0 {
		ok, err := answer(call(ctx, r, m.Addr, func(ctx context.Context, rep Replicator) (*InstallResponse, error) {
			return rep.Install(ctx, &InstallRequest{From: s.cfg.ID, Key: key, Term: term, BaseTerm: baseTerm, BaseLSN: baseLSN})
		}))
		if err != nil {
			return err
		}
		if ok {
			r.mu.Lock()
			r.st.Relabels++
			r.mu.Unlock()
			return nil
		}
	}
	p.mu.Lock()
	if !p.active || p.term != term {
		p.mu.Unlock()
		return Errorf(ErrNotOwner, "install %s to %s: no longer primary", key, m.ID)
	}
	st := p.snapshotLocked()
	p.mu.Unlock()
	start := time.Now()
	ok, err := answer(call(ctx, r, m.Addr, func(ctx context.Context, rep Replicator) (*InstallResponse, error) {
		return rep.Install(ctx, &InstallRequest{From: s.cfg.ID, Key: key, Term: term, State: st})
	}))
	if err != nil {
		return err
	}
	if !ok {
		return Errorf(ErrUnavailable, "install %s to %s: refused", key, m.ID)
	}
	r.mu.Lock()
	r.st.Installs++
	r.st.InstallBytes += 4 * uint64(len(st.Values))
	r.mu.Unlock()
	s.log.Info("replica installed", "key", key.String(), "to", m.ID, "lsn", st.LSN, "bytes", 4*len(st.Values), "took", time.Since(start))
	return nil
}

// reconcileLoop brings this server's partitions in line with view: it takes
// over what it now leads, re-replicates active partitions to their owners,
// nudges the new primary of partitions it holds but no longer leads, and
// drops copies placement moved away. Each partition retries on its own
// (with backoff, at most four at a time) until it is settled or the view
// changes, so one slow partition does not hold up the others.
func (r *replication) reconcileLoop(ctx context.Context, view sharding.View) {
	s := r.s
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, p := range s.hosted() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := 50 * time.Millisecond
			for {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				err := r.reconcilePart(ctx, view, p)
				<-sem
				if err == nil || ctx.Err() != nil || s.checkOpen("reconcile") != nil {
					return
				}
				s.log.Debug("reconcile", "key", p.key.String(), "epoch", view.Epoch, "err", err)
				t := time.NewTimer(backoff)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				backoff = min(2*backoff, time.Second)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() == nil {
		s.log.Debug("reconciled", "epoch", view.Epoch)
	}
}

func (r *replication) reconcilePart(ctx context.Context, view sharding.View, p *partition) error {
	s := r.s
	owners := r.owners(view, p.key)
	if len(owners) == 0 {
		return nil
	}
	if owners[0].ID == s.cfg.ID {
		rctx, cancel := context.WithTimeout(ctx, 3*r.cfg.Timeout)
		defer cancel()
		ap, err := r.activePart(rctx, "reconcile", p.key, nil)
		if err != nil {
			return err
		}
		ap.mu.Lock()
		op := ReplicateOp{Key: ap.key, Term: ap.term, LSN: ap.lsn, Barrier: true}
		ap.mu.Unlock()
		return r.replicate(rctx, []ReplicateOp{op})
	}
	// Nudge the primary, and fence it with the newest term this server
	// knows for the partition: a primary that comes back from a network
	// partition (its own view perhaps unchanged) still active under an
	// older term than the one the others moved on to must not go on
	// serving its stale copy; the fence stops it, and the nudge makes it
	// take over again, adopting the newest copy by (term, LSN). Fencing a
	// primary with its own or an older term changes nothing.
	p.mu.Lock()
	known := p.promised
	if known.Less(p.term) {
		known = p.term
	}
	p.mu.Unlock()
	req := &FetchRequest{From: s.cfg.ID, Key: p.key, Nudge: true}
	if known != (Term{}) {
		req.Fence = &known
	}
	fr, err := call(ctx, r, owners[0].Addr, func(ctx context.Context, rep Replicator) (*FetchResponse, error) {
		return rep.Fetch(ctx, req)
	})
	if err != nil {
		return err
	}
	if !fr.Active {
		return Errorf(ErrNotOwner, "%s: new primary %s not active yet", p.key, owners[0].ID)
	}
	if fr.Term.Less(known) {
		return Errorf(ErrNotOwner, "%s: primary %s is active at term %v, older than %v known here", p.key, owners[0].ID, fr.Term, known)
	}
	for _, o := range owners {
		if o.ID == s.cfg.ID {
			return nil // a replica: the primary keeps it in sync
		}
	}
	// Placement moved this copy away. Drop it once the primary holds
	// everything it holds and its replicas are in sync — the replicas of
	// its view must be exactly those of ours (so it no longer counts on
	// this copy, and the owners we expect do hold the data) — so no
	// acknowledged update depends on this copy.
	if !fr.Synced {
		return Errorf(ErrNotOwner, "%s: primary %s not yet in sync with its replicas", p.key, owners[0].ID)
	}
	want := make([]string, 0, len(owners)-1)
	for _, o := range owners[1:] {
		want = append(want, o.ID)
	}
	if !slices.Equal(want, fr.Replicas) {
		return Errorf(ErrNotOwner, "%s: primary %s replicates to %v, placement here says %v", p.key, owners[0].ID, fr.Replicas, want)
	}
	p.mu.Lock()
	stale := !p.active && !newer(p.term, p.lsn, fr.Term, fr.LSN)
	p.mu.Unlock()
	if !stale {
		return Errorf(ErrNotOwner, "%s: this copy is newer than primary %s's", p.key, owners[0].ID)
	}
	s.mu.Lock()
	if s.parts[p.key] == p {
		delete(s.parts, p.key)
	}
	s.mu.Unlock()
	p.mu.Lock()
	promised := p.promised
	p.mu.Unlock()
	r.mu.Lock()
	if r.promises[p.key].Less(promised) {
		r.promises[p.key] = promised
	}
	r.st.Dropped++
	r.mu.Unlock()
	s.log.Info("dropped moved copy", "key", p.key.String(), "primary", owners[0].ID)
	return nil
}

// Drain prepares a graceful leave: the server stops accepting pulls and
// pushes (ErrNotOwner, so clients retry elsewhere), and hands a copy of
// every partition it holds to the partition's owners in the view without
// this server, so nothing it alone may hold is lost. Call it before
// leaving the membership; the new primaries take over when their views
// drop this server.
func (s *Server) Drain(ctx context.Context) error {
	r := s.repl
	if r == nil {
		return nil
	}
	r.mu.Lock()
	r.leaving = true
	view := r.view
	r.mu.Unlock()
	var rest sharding.View
	rest.Epoch = view.Epoch
	for _, m := range view.Members {
		if m.ID != s.cfg.ID {
			rest.Members = append(rest.Members, m)
		}
	}
	var errs []error
	for _, p := range s.hosted() {
		p.mu.Lock()
		p.setActiveLocked(false)
		st := p.snapshotLocked()
		p.mu.Unlock()
		var wg sync.WaitGroup
		owners := r.owners(rest, p.key)
		perr := make([]error, len(owners))
		for i, m := range owners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, perr[i] = call(ctx, r, m.Addr, func(ctx context.Context, rep Replicator) (*InstallResponse, error) {
					return rep.Install(ctx, &InstallRequest{From: s.cfg.ID, Key: p.key, Handoff: true, State: st})
				})
				if perr[i] != nil {
					perr[i] = fmt.Errorf("hand %s to %s: %w", p.key, m.ID, perr[i])
				}
			}()
		}
		wg.Wait()
		errs = append(errs, perr...)
	}
	s.log.Info("drained: partitions handed over", "partitions", len(s.hosted()))
	return errors.Join(errs...)
}
