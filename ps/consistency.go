package ps

import (
	"slices"
)

// WaitID names a pull that waits inside a Machine. The driver chooses it
// (unique among the machine's pending waits) and learns from Push results
// when the pull may proceed.
type WaitID uint64

// Machine is the consistency logic of one partition as a pure,
// single-threaded state machine, in the style of etcd's raft RawNode: no
// goroutines, no clocks, no locks. A driver (ps.Server, under the
// partition's lock) feeds it pushes and pulls and acts on its decisions:
// it applies the Update a push result hands out, and wakes the pulls a push
// result releases.
//
// The machine tracks the partition's version (the number of updates
// applied) and, per mode:
//
//   - Async: every push is an update, applied at once; version += 1.
//   - Sync: pushes carry the step (version) they were computed against. A
//     push for an older step is ErrStale, for a future step
//     ErrInvalidArgument, a second push from the same worker for the same
//     step is a duplicate (accepted, ignored). The gradients of step t from
//     Workers-Backup distinct workers are summed; the last of them gets an
//     Update holding their mean, and the version becomes t+1. Sparse
//     gradients are summed row by row and divided by the number of
//     gradients aggregated (as TensorFlow's SyncReplicasOptimizer does),
//     so a row that one of two workers touched gets half its gradient; if
//     any gradient of the step is dense, the Update is dense.
//   - SSP: every push is applied at once and raises the worker's clock to
//     the push's clock. A pull by a worker at clock c waits while the
//     slowest worker's clock is below c - Staleness.
//
// In every mode a pull with MinVersion > version waits until the version
// reaches it.
type Machine struct {
	mode      Mode
	workers   int
	need      int // sync: gradients per step
	staleness int64
	size      int
	rowSize   int
	version   int64

	// sync aggregation of the current step
	pushed    []bool
	count     int
	acc       []float32 // dense sum, allocated on first use
	accDirty  bool      // acc holds data that must be zeroed before reuse
	anyDense  bool      // a dense gradient arrived this step
	touched   []bool    // sparse rows touched this step (per row)
	rowsSeen  []int64   // the touched rows, in arrival order
	sparseOut []float32 // gathered mean for sparse updates

	// ssp
	clocks []int64

	waits map[WaitID]waitCond
}

type waitCond struct {
	minVersion int64
	clock      int64 // ssp: the pulling worker's clock
}

// NewMachine returns the machine of a partition of size values in rows of
// rowSize under consistency c, at version 0. c must be valid (see
// VariableSpec.Validate).
func NewMachine(c Consistency, size, rowSize int) (*Machine, error) {
	if err := validateConsistency(c); err != nil {
		return nil, err
	}
	if size < 0 || rowSize <= 0 || size%rowSize != 0 {
		return nil, Errorf(ErrInvalidArgument, "consistency machine for %d values in rows of %d", size, rowSize)
	}
	m := &Machine{mode: c.Mode, size: size, rowSize: rowSize, waits: map[WaitID]waitCond{}}
	if m.mode == "" {
		m.mode = Async
	}
	switch m.mode {
	case Sync:
		m.workers = c.Workers
		m.need = c.Workers - c.Backup
		m.pushed = make([]bool, c.Workers)
	case SSP:
		m.workers = c.Workers
		m.staleness = int64(c.Staleness)
		m.clocks = make([]int64, c.Workers)
	}
	return m, nil
}

// Version is the number of updates applied so far.
func (m *Machine) Version() int64 { return m.version }

// SetVersion sets the version (restoring a checkpoint or a replica's copy)
// and drops any partial sync aggregation.
func (m *Machine) SetVersion(v int64) {
	m.version = v
	m.resetStep(true)
}

// Pending reports how many gradients of the current sync step have been
// aggregated (always 0 in other modes).
func (m *Machine) Pending() int { return m.count }

// MinClock is the slowest worker's clock (SSP; 0 in other modes).
func (m *Machine) MinClock() int64 {
	if len(m.clocks) == 0 {
		return 0
	}
	return slices.Min(m.clocks)
}

// PushEvent is one gradient for the partition. Rows nil means Grad covers
// the whole partition; otherwise Grad holds len(Rows)×rowSize values for
// those partition-local rows. The machine does not retain Rows or Grad
// after Push returns.
type PushEvent struct {
	Worker int
	Step   int64 // sync: the version the gradient was computed against
	Clock  int64 // ssp: the worker's clock after this push
	Rows   []int64
	Grad   []float32
}

// Outcome says what the machine did with a push.
type Outcome int

// The outcomes of a push.
const (
	// Applied: the push (or, in sync mode, the step it completed) yields an
	// Update that the driver must apply now.
	Applied Outcome = iota + 1
	// Aggregated: sync mode, the gradient was added to the step's sum; the
	// step still waits for other workers.
	Aggregated
	// Duplicate: sync mode, this worker already pushed for this step; the
	// push was ignored.
	Duplicate
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Aggregated:
		return "aggregated"
	case Duplicate:
		return "duplicate"
	}
	return "unknown"
}

// Update is a gradient the driver must apply with the partition's
// optimizer. Rows nil means a dense update. Rows and Grad may alias the
// machine's buffers or the pushed event's; they are valid until the next
// call on the machine.
type Update struct {
	Rows []int64
	Grad []float32
}

// PushResult is the machine's decision on a push.
type PushResult struct {
	Outcome Outcome
	// Update is set when Outcome is Applied.
	Update *Update
	// Version is the partition's version after the push.
	Version int64
	// Released lists the waiting pulls that may now proceed, in
	// ascending order.
	Released []WaitID
}

// CheckPush reports whether Push would accept ev, without changing
// anything. The driver calls it for every part of a request before pushing
// any, so that a rejected request changes nothing.
func (m *Machine) CheckPush(ev PushEvent) error {
	if ev.Rows == nil {
		if len(ev.Grad) != m.size {
			return Errorf(ErrShapeMismatch, "%d gradient values, want %d", len(ev.Grad), m.size)
		}
	} else {
		if len(ev.Grad) != len(ev.Rows)*m.rowSize {
			return Errorf(ErrShapeMismatch, "%d gradient values for %d rows of %d, want %d", len(ev.Grad), len(ev.Rows), m.rowSize, len(ev.Rows)*m.rowSize)
		}
		nrows := int64(m.size / m.rowSize)
		for _, r := range ev.Rows {
			if r < 0 || r >= nrows {
				return Errorf(ErrInvalidArgument, "row %d out of range [0, %d)", r, nrows)
			}
		}
	}
	switch m.mode {
	case Sync:
		if ev.Worker < 0 || ev.Worker >= m.workers {
			return Errorf(ErrInvalidArgument, "worker %d out of range [0, %d)", ev.Worker, m.workers)
		}
		if ev.Step < m.version {
			return Errorf(ErrStale, "push for step %d, version is %d", ev.Step, m.version)
		}
		if ev.Step > m.version {
			return Errorf(ErrInvalidArgument, "push for future step %d, version is %d", ev.Step, m.version)
		}
	case SSP:
		if ev.Worker < 0 || ev.Worker >= m.workers {
			return Errorf(ErrInvalidArgument, "worker %d out of range [0, %d)", ev.Worker, m.workers)
		}
		if ev.Clock < 0 {
			return Errorf(ErrInvalidArgument, "negative clock %d", ev.Clock)
		}
	}
	return nil
}

// Push feeds one gradient to the machine. It returns the CheckPush error,
// and then changes nothing, when ev is not acceptable.
func (m *Machine) Push(ev PushEvent) (PushResult, error) {
	if err := m.CheckPush(ev); err != nil {
		return PushResult{}, err
	}
	switch m.mode {
	case Sync:
		return m.pushSync(ev), nil
	case SSP:
		if ev.Clock > m.clocks[ev.Worker] {
			m.clocks[ev.Worker] = ev.Clock
		}
	}
	m.version++
	return PushResult{
		Outcome:  Applied,
		Update:   &Update{Rows: ev.Rows, Grad: ev.Grad},
		Version:  m.version,
		Released: m.release(),
	}, nil
}

func (m *Machine) pushSync(ev PushEvent) PushResult {
	if m.pushed[ev.Worker] {
		return PushResult{Outcome: Duplicate, Version: m.version}
	}
	m.pushed[ev.Worker] = true
	m.count++
	first, last := m.count == 1, m.count >= m.need
	n := float32(m.count)
	if ev.Rows == nil && first && last {
		// One gradient per step: its mean is itself. Hand it out as it
		// is, without a pass over the sum.
		m.version++
		m.resetStep(false)
		return PushResult{Outcome: Applied, Update: &Update{Grad: ev.Grad}, Version: m.version, Released: m.release()}
	}
	if m.acc == nil {
		m.acc = make([]float32, m.size)
	}
	if ev.Rows == nil {
		m.anyDense = true
		switch {
		case first:
			// The sum so far is this gradient: copy it over whatever
			// the last step left.
			copy(m.acc, ev.Grad)
			m.accDirty = false
		case last:
			// Add the step's last gradient and divide by the count in
			// one pass.
			addDiv(m.acc, ev.Grad, n)
		default:
			addTo(m.acc, ev.Grad)
		}
	} else {
		if first && m.accDirty {
			clear(m.acc)
			m.accDirty = false
		}
		if m.touched == nil {
			m.touched = make([]bool, m.size/m.rowSize)
		}
		rs := m.rowSize
		for i, r := range ev.Rows {
			if !m.touched[r] {
				m.touched[r] = true
				m.rowsSeen = append(m.rowsSeen, r)
			}
			addTo(m.acc[int(r)*rs:int(r)*rs+rs], ev.Grad[i*rs:i*rs+rs])
		}
		if last && m.anyDense {
			divBy(m.acc, n)
		}
	}
	if !last {
		return PushResult{Outcome: Aggregated, Version: m.version}
	}
	// The step is complete: hand out the mean.
	var up Update
	if m.anyDense {
		up.Grad = m.acc
		m.accDirty = true
	} else {
		rs := m.rowSize
		rows := slices.Clone(m.rowsSeen)
		slices.Sort(rows)
		out := m.sparseOut[:0]
		for _, r := range rows {
			src := m.acc[int(r)*rs : int(r)*rs+rs]
			for _, x := range src {
				out = append(out, x/n)
			}
			clear(src)
		}
		m.sparseOut = out
		up.Rows = rows
		up.Grad = out
		if up.Rows == nil {
			up.Rows = []int64{} // every worker pushed an empty sparse gradient
		}
	}
	m.version++
	m.resetStep(false)
	return PushResult{Outcome: Applied, Update: &up, Version: m.version, Released: m.release()}
}

// resetStep forgets the current sync step's contributors. A completed
// step has already dealt with the sum (a dense sum is zeroed lazily by the
// next step's first push, because an Update may still alias it; sparse rows
// were zeroed as they were gathered); an abandoned one marks it for zeroing.
func (m *Machine) resetStep(abandon bool) {
	if m.mode != Sync {
		return
	}
	if abandon && m.count > 0 {
		m.accDirty = true
	}
	clear(m.pushed)
	for _, r := range m.rowsSeen {
		m.touched[r] = false
	}
	m.rowsSeen = m.rowsSeen[:0]
	m.count = 0
	m.anyDense = false
}

// Pull asks whether a pull may read the partition now: at least minVersion
// and, in SSP mode, the slowest worker's clock at least clock - Staleness.
// When it may not, the machine records the pull under id and a later Push
// result lists id in Released; the driver calls Cancel(id) if it gives up.
// Pull returns an error wrapping ErrInvalidArgument, and records nothing,
// when the worker or clock is out of range in SSP mode or id is in use.
func (m *Machine) Pull(id WaitID, worker int, clock, minVersion int64) (ready bool, err error) {
	if m.mode == SSP {
		if worker < 0 || worker >= m.workers {
			return false, Errorf(ErrInvalidArgument, "worker %d out of range [0, %d)", worker, m.workers)
		}
		if clock < 0 {
			return false, Errorf(ErrInvalidArgument, "negative clock %d", clock)
		}
	}
	c := waitCond{minVersion: minVersion, clock: clock}
	if m.satisfied(c) {
		return true, nil
	}
	if _, ok := m.waits[id]; ok {
		return false, Errorf(ErrInvalidArgument, "wait id %d in use", id)
	}
	m.waits[id] = c
	return false, nil
}

// Cancel forgets a waiting pull (its context ended). Unknown ids are
// ignored.
func (m *Machine) Cancel(id WaitID) { delete(m.waits, id) }

// Waiting is the number of pulls waiting.
func (m *Machine) Waiting() int { return len(m.waits) }

func (m *Machine) satisfied(c waitCond) bool {
	if m.version < c.minVersion {
		return false
	}
	if m.mode == SSP && m.MinClock() < c.clock-m.staleness {
		return false
	}
	return true
}

func (m *Machine) release() []WaitID {
	var out []WaitID
	for id, c := range m.waits {
		if m.satisfied(c) {
			out = append(out, id)
			delete(m.waits, id)
		}
	}
	slices.Sort(out)
	return out
}
