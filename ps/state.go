package ps

import (
	"fmt"
	"maps"
	"slices"
)

// Term orders the primaries a partition has had. A node that takes over a
// partition picks a term above every term the other hosts promised, so two
// would-be primaries never share one. Terms compare by N, then by ID.
type Term struct {
	N  uint64 `json:"n"`
	ID string `json:"id,omitempty"`
}

// Less reports whether t orders before u.
func (t Term) Less(u Term) bool {
	if t.N != u.N {
		return t.N < u.N
	}
	return t.ID < u.ID
}

// String renders the term as "N@ID".
func (t Term) String() string { return fmt.Sprintf("%d@%s", t.N, t.ID) }

// DedupState is one client's dedup window on one partition: the highest
// push sequence number accepted and every accepted one still in the window.
type DedupState struct {
	Max  uint64   `json:"max"`
	Seen []uint64 `json:"seen"` // ascending
}

// MachineState is the consistency machine's state beyond the version: the
// partial sum of the current sync step and the SSP clocks. It is empty in
// async mode.
type MachineState struct {
	// Sync: which workers pushed for the current step, how many, their sum
	// (nil when nothing is pending), whether any was dense, and the sparse
	// rows touched in arrival order.
	Pushed   []bool    `json:"pushed,omitempty"`
	Count    int       `json:"count,omitempty"`
	Acc      []float32 `json:"acc,omitempty"`
	AnyDense bool      `json:"any_dense,omitempty"`
	RowsSeen []int64   `json:"rows_seen,omitempty"`
	// SSP: each worker's clock.
	Clocks []int64 `json:"clocks,omitempty"`
}

// PartitionState is everything a server knows about one partition: enough
// to rebuild it bit for bit on another server (migration, re-replication)
// or after a restart (checkpoints). It is plain data; Snapshot returns a
// deep copy that shares nothing with the server.
type PartitionState struct {
	// Spec is the variable's spec (normalized: defaults filled in).
	Spec  VariableSpec `json:"spec"`
	Index int          `json:"index"`
	Rows  RowRange     `json:"rows"`
	// Version is the consistency machine's version (updates applied).
	Version int64 `json:"version"`
	// LSN counts the operations (accepted pushes) applied: the position in
	// the partition's replication log. Term is the term of the primary that
	// issued the last of them; (Term, LSN) orders copies of a partition by
	// recency.
	LSN  uint64 `json:"lsn"`
	Term Term   `json:"term"`
	// Values are the partition's values, rows × row size.
	Values []float32 `json:"values"`
	// Slots are the optimizer's per-value state by name: "accum"
	// (momentum, adagrad, ftrl), "m" and "v" (adam), "linear" (ftrl).
	Slots map[string][]float32 `json:"slots,omitempty"`
	// AdamStep is Adam's step count t.
	AdamStep int64 `json:"adam_step,omitempty"`
	// Machine is the consistency machine's pending state.
	Machine MachineState `json:"machine"`
	// Dedup holds each client's dedup window, by client id.
	Dedup map[string]DedupState `json:"dedup,omitempty"`
}

// Key is the partition's key.
func (st *PartitionState) Key() PartKey { return PartKey{st.Spec.Name, st.Index} }

// Newer reports whether st is a more recent copy than (term, lsn).
func (st *PartitionState) Newer(term Term, lsn uint64) bool {
	return newer(st.Term, st.LSN, term, lsn)
}

func newer(t1 Term, l1 uint64, t2 Term, l2 uint64) bool {
	if t1 != t2 {
		return t2.Less(t1)
	}
	return l1 > l2
}

// Snapshot returns a deep copy of one hosted partition's state. It does not
// check ownership: any host of the partition may snapshot it.
func (s *Server) Snapshot(key PartKey) (*PartitionState, error) {
	s.mu.RLock()
	p, ok := s.parts[key]
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("snapshot %s on %s: %w", key, s.cfg.ID, ErrClosed)
	}
	if !ok {
		return nil, Errorf(ErrUnknownVariable, "snapshot %s on %s: partition not hosted", key, s.cfg.ID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snapshotLocked(), nil
}

// SnapshotAll returns a deep copy of every hosted partition, in key order.
// Each partition is copied under its own lock, one after the other, so the
// result is consistent per partition (not across partitions).
func (s *Server) SnapshotAll() ([]*PartitionState, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, fmt.Errorf("snapshot on %s: %w", s.cfg.ID, ErrClosed)
	}
	ps := make([]*partition, 0, len(s.parts))
	for _, p := range s.parts {
		ps = append(ps, p)
	}
	s.mu.RUnlock()
	slices.SortFunc(ps, func(a, b *partition) int { return compareKeys(a.key, b.key) })
	out := make([]*PartitionState, len(ps))
	for i, p := range ps {
		p.mu.Lock()
		out[i] = p.snapshotLocked()
		p.mu.Unlock()
	}
	return out, nil
}

// Restore hosts the partition st describes, replacing any hosted copy of
// it. st is validated first (ErrInvalidArgument, ErrShapeMismatch) and
// copied: the caller may reuse it. Restore does not check ownership and
// does not make this server the partition's active primary: a replaced
// copy that was active is deactivated, and with replication the server
// takes over (and re-syncs the replicas under a new term) at the next
// request or view change when placement says it leads the partition.
// With replication, a takeover adopts the most recent copy by (Term, LSN)
// among the members, so restore checkpoints into empty servers (at start),
// not into a cluster that already serves the variable.
func (s *Server) Restore(st *PartitionState) error {
	p, err := partitionFromState(st)
	if err != nil {
		return fmt.Errorf("restore on %s: %w", s.cfg.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("restore on %s: %w", s.cfg.ID, ErrClosed)
	}
	if old, ok := s.parts[p.key]; ok {
		old.mu.Lock()
		old.installLocked(p)
		old.setActiveLocked(false)
		old.mu.Unlock()
		return nil
	}
	s.parts[p.key] = p
	return nil
}

// snapshotLocked copies the partition's state; p.mu must be held.
func (p *partition) snapshotLocked() *PartitionState {
	st := &PartitionState{
		Spec:    p.spec.normalized(),
		Index:   p.key.Index,
		Rows:    p.rows,
		Version: p.cm.version,
		LSN:     p.lsn,
		Term:    p.term,
		Values:  slices.Clone(p.values),
	}
	st.Slots, st.AdamStep = optimizerSlots(p.opt)
	st.Machine = machineState(p.cm)
	if len(p.dedup) > 0 {
		st.Dedup = make(map[string]DedupState, len(p.dedup))
		for id, w := range p.dedup {
			seen := slices.Collect(maps.Keys(w.seen))
			slices.Sort(seen)
			st.Dedup[id] = DedupState{Max: w.max, Seen: seen}
		}
	}
	return st
}

// installLocked replaces p's state with q's (a partition built by
// partitionFromState); p.mu must be held. Pulls waiting on p are woken if
// the new version satisfies them; the rest keep waiting.
func (p *partition) installLocked(q *partition) {
	p.spec = q.spec
	p.rows, p.rowSize = q.rows, q.rowSize
	p.values, p.opt, p.lsn, p.term, p.dedup = q.values, q.opt, q.lsn, q.term, q.dedup
	waits := p.cm.waits
	p.cm = q.cm
	for id, c := range waits {
		p.cm.waits[id] = c
	}
	for _, id := range p.cm.release() {
		if ch, ok := p.waiters[id]; ok {
			close(ch)
			delete(p.waiters, id)
		}
	}
	if p.promised.Less(p.term) {
		p.promised = p.term
	}
}

// partitionFromState validates st and builds a partition holding a copy of
// it.
func partitionFromState(st *PartitionState) (*partition, error) {
	if st == nil {
		return nil, Errorf(ErrInvalidArgument, "nil partition state")
	}
	if err := st.Spec.Validate(); err != nil {
		return nil, err
	}
	spec := st.Spec.normalized()
	ranges := spec.Partitions()
	key := PartKey{spec.Name, st.Index}
	if st.Index < 0 || st.Index >= len(ranges) {
		return nil, Errorf(ErrInvalidArgument, "state of %s: the variable has %d partitions", key, len(ranges))
	}
	if ranges[st.Index] != st.Rows {
		return nil, Errorf(ErrShapeMismatch, "state of %s: rows %v, the spec gives %v", key, st.Rows, ranges[st.Index])
	}
	if st.Version < 0 {
		return nil, Errorf(ErrInvalidArgument, "state of %s: negative version %d", key, st.Version)
	}
	p, err := buildPartition(&spec, st.Index, st.Rows, false)
	if err != nil {
		return nil, err
	}
	if len(st.Values) != len(p.values) {
		return nil, Errorf(ErrShapeMismatch, "state of %s: %d values, want %d", key, len(st.Values), len(p.values))
	}
	copy(p.values, st.Values)
	if err := setOptimizerSlots(p.opt, st.Slots, st.AdamStep); err != nil {
		return nil, fmt.Errorf("state of %s: %w", key, err)
	}
	if err := setMachineState(p.cm, st.Version, st.Machine); err != nil {
		return nil, fmt.Errorf("state of %s: %w", key, err)
	}
	p.lsn, p.term, p.promised = st.LSN, st.Term, st.Term
	for id, d := range st.Dedup {
		w := &seqWindow{max: d.Max, any: true, seen: make(map[uint64]struct{}, len(d.Seen))}
		for _, q := range d.Seen {
			if q > d.Max {
				return nil, Errorf(ErrInvalidArgument, "state of %s: client %s seq %d above its max %d", key, id, q, d.Max)
			}
			w.seen[q] = struct{}{}
		}
		p.dedup[id] = w
	}
	return p, nil
}

// optimizerSlots copies an optimizer's slots and Adam's step.
func optimizerSlots(o Optimizer) (map[string][]float32, int64) {
	opt, ok := o.(*optimizer)
	if !ok {
		return nil, 0
	}
	switch k := opt.k.(type) {
	case *momentum:
		return map[string][]float32{"accum": slices.Clone(k.accum)}, 0
	case *adagrad:
		return map[string][]float32{"accum": slices.Clone(k.accum)}, 0
	case *adam:
		return map[string][]float32{"m": slices.Clone(k.m), "v": slices.Clone(k.v)}, k.t
	case *ftrl:
		return map[string][]float32{"accum": slices.Clone(k.accum), "linear": slices.Clone(k.linear)}, 0
	}
	return nil, 0
}

// setOptimizerSlots copies slots into a fresh optimizer of the right kind.
// Slots the optimizer has must all be present with the right length; extra
// names are an error.
func setOptimizerSlots(o Optimizer, slots map[string][]float32, step int64) error {
	opt, ok := o.(*optimizer)
	if !ok {
		return Errorf(ErrInvalidArgument, "optimizer %T has no exportable slots", o)
	}
	want := map[string][]float32{}
	switch k := opt.k.(type) {
	case *momentum:
		want["accum"] = k.accum
	case *adagrad:
		want["accum"] = k.accum
	case *adam:
		want["m"], want["v"] = k.m, k.v
		if step < 0 {
			return Errorf(ErrInvalidArgument, "negative adam step %d", step)
		}
		k.t = step
	case *ftrl:
		want["accum"], want["linear"] = k.accum, k.linear
	}
	for name := range slots {
		if _, ok := want[name]; !ok {
			return Errorf(ErrInvalidArgument, "optimizer has no slot %q", name)
		}
	}
	for name, dst := range want {
		src, ok := slots[name]
		if !ok {
			return Errorf(ErrInvalidArgument, "optimizer slot %q missing", name)
		}
		if len(src) != len(dst) {
			return Errorf(ErrShapeMismatch, "optimizer slot %q has %d values, want %d", name, len(src), len(dst))
		}
		copy(dst, src)
	}
	return nil
}

// machineState copies a consistency machine's pending state.
func machineState(m *Machine) MachineState {
	var st MachineState
	switch m.mode {
	case Sync:
		st.Pushed = slices.Clone(m.pushed)
		st.Count = m.count
		st.AnyDense = m.anyDense
		if m.count > 0 {
			st.Acc = slices.Clone(m.acc)
			st.RowsSeen = slices.Clone(m.rowsSeen)
		}
	case SSP:
		st.Clocks = slices.Clone(m.clocks)
	}
	return st
}

// setMachineState loads version and pending state into a fresh machine.
func setMachineState(m *Machine, version int64, st MachineState) error {
	m.version = version
	switch m.mode {
	case Sync:
		if st.Count == 0 {
			return nil
		}
		if len(st.Pushed) != m.workers {
			return Errorf(ErrInvalidArgument, "sync state for %d workers, want %d", len(st.Pushed), m.workers)
		}
		n := 0
		for _, b := range st.Pushed {
			if b {
				n++
			}
		}
		if n != st.Count || st.Count >= m.need {
			return Errorf(ErrInvalidArgument, "sync state: %d pending of %d pushed flags, %d needed", st.Count, n, m.need)
		}
		if len(st.Acc) != m.size {
			return Errorf(ErrShapeMismatch, "sync state: %d summed values, want %d", len(st.Acc), m.size)
		}
		nrows := int64(m.size / m.rowSize)
		if len(st.RowsSeen) > 0 {
			m.touched = make([]bool, nrows)
		}
		for _, r := range st.RowsSeen {
			if r < 0 || r >= nrows || m.touched[r] {
				return Errorf(ErrInvalidArgument, "sync state: bad touched row %d", r)
			}
			m.touched[r] = true
		}
		copy(m.pushed, st.Pushed)
		m.count = st.Count
		m.acc = slices.Clone(st.Acc)
		m.anyDense = st.AnyDense
		m.rowsSeen = slices.Clone(st.RowsSeen)
	case SSP:
		if len(st.Clocks) != m.workers {
			return Errorf(ErrInvalidArgument, "ssp state for %d workers, want %d", len(st.Clocks), m.workers)
		}
		for _, c := range st.Clocks {
			if c < 0 {
				return Errorf(ErrInvalidArgument, "ssp state: negative clock %d", c)
			}
		}
		copy(m.clocks, st.Clocks)
	}
	return nil
}
