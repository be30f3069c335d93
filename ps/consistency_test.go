package ps

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// mev is one event fed to a Machine and the decision expected back.
type mev struct {
	// push (op "push"), pull (op "pull") or cancel (op "cancel")
	op         string
	worker     int
	step       int64
	clock      int64
	rows       []int64
	grad       []float32
	id         WaitID
	minVersion int64

	// expectations
	err      error   // sentinel, or nil
	outcome  Outcome // push
	version  int64   // push: version after
	update   []float32
	upRows   []int64 // nil: dense update expected (when update != nil)
	released []WaitID
	ready    bool // pull
}

func push(worker int, step int64, grad ...float32) mev {
	return mev{op: "push", worker: worker, step: step, grad: grad}
}

func (e mev) want(o Outcome, version int64) mev { e.outcome, e.version = o, version; return e }
func (e mev) wantUpdate(g ...float32) mev       { e.update = g; return e }
func (e mev) wantRows(r ...int64) mev           { e.upRows = r; return e }
func (e mev) wantReleased(ids ...WaitID) mev    { e.released = ids; return e }
func (e mev) wantErr(err error) mev             { e.err = err; return e }
func (e mev) at(clock int64) mev                { e.clock = clock; return e }
func (e mev) sparse(rows ...int64) mev          { e.rows = append([]int64{}, rows...); return e }

func pull(id WaitID, worker int, clock, minVersion int64, ready bool) mev {
	return mev{op: "pull", id: id, worker: worker, clock: clock, minVersion: minVersion, ready: ready}
}

func TestMachineTable(t *testing.T) {
	tests := []struct {
		name    string
		c       Consistency
		size    int
		rowSize int
		events  []mev
		waiting int
	}{
		{
			name: "async applies every push", c: Consistency{Mode: Async}, size: 2, rowSize: 1,
			events: []mev{
				pull(1, 0, 0, 2, false),
				push(0, 0, 1, 2).want(Applied, 1).wantUpdate(1, 2),
				push(3, 99, 3, 4).want(Applied, 2).wantUpdate(3, 4).wantReleased(1),
				pull(2, 0, 0, 2, true),
				push(0, 0, 1).wantErr(ErrShapeMismatch),
			},
		},
		{
			name: "sync two workers mean, stale, future, duplicate", c: Consistency{Mode: Sync, Workers: 2}, size: 2, rowSize: 1,
			events: []mev{
				pull(7, 0, 0, 1, false),
				pull(8, 1, 0, 2, false),
				push(0, 1, 1, 1).wantErr(ErrInvalidArgument), // future step
				push(0, 0, 1, 2).want(Aggregated, 0),
				push(0, 0, 100, 100).want(Duplicate, 0),
				push(2, 0, 1, 1).wantErr(ErrInvalidArgument), // no such worker
				push(1, 0, 3, 6).want(Applied, 1).wantUpdate(2, 4).wantReleased(7),
				push(1, 0, 1, 1).wantErr(ErrStale),
				push(1, 1, 0, 2).want(Aggregated, 1),
				push(0, 1, 2, 0).want(Applied, 2).wantUpdate(1, 1).wantReleased(8),
			},
		},
		{
			name: "sync backup worker: first two of three, third is stale", c: Consistency{Mode: Sync, Workers: 3, Backup: 1}, size: 1, rowSize: 1,
			events: []mev{
				push(2, 0, 4).want(Aggregated, 0),
				push(0, 0, 2).want(Applied, 1).wantUpdate(3),
				push(1, 0, 9).wantErr(ErrStale),
				push(1, 1, 1).want(Aggregated, 1),
				push(2, 1, 5).want(Applied, 2).wantUpdate(3),
			},
		},
		{
			name: "sync sparse rows are summed and averaged, rows sorted", c: Consistency{Mode: Sync, Workers: 2}, size: 6, rowSize: 2,
			events: []mev{
				push(0, 0, 1, 1, 2, 2).sparse(2, 0).want(Aggregated, 0),
				push(1, 0, 4, 4, 6, 6).sparse(2, 2).want(Applied, 1).wantRows(0, 2).wantUpdate(1, 1, 5.5, 5.5),
				// next step: nothing of the last sum leaks in
				push(0, 1, 2, 2).sparse(1).want(Aggregated, 1),
				push(1, 1).sparse().want(Applied, 2).wantRows(1).wantUpdate(1, 1),
			},
		},
		{
			name: "sync mixed dense and sparse is applied dense", c: Consistency{Mode: Sync, Workers: 2}, size: 2, rowSize: 1,
			events: []mev{
				push(0, 0, 4).sparse(1).want(Aggregated, 0),
				push(1, 0, 2, 2).want(Applied, 1).wantUpdate(1, 3),
				// the dense sum is zeroed before the next step
				push(1, 1, 2, 2).want(Aggregated, 1),
				push(0, 1, 0, 0).want(Applied, 2).wantUpdate(1, 1),
			},
		},
		{
			name: "sync single worker", c: Consistency{Mode: Sync, Workers: 1}, size: 1, rowSize: 1,
			events: []mev{
				push(0, 0, 5).want(Applied, 1).wantUpdate(5),
				push(0, 1, 6).want(Applied, 2).wantUpdate(6),
			},
		},
		{
			name: "ssp staleness 1", c: Consistency{Mode: SSP, Workers: 2, Staleness: 1}, size: 1, rowSize: 1,
			events: []mev{
				pull(1, 0, 1, 0, true),  // min clock 0 ≥ 1-1
				pull(2, 0, 2, 0, false), // 0 < 2-1
				push(0, 0, 1).at(2).want(Applied, 1).wantUpdate(1),
				pull(3, 0, 3, 0, false),
				push(1, 0, 1).at(1).want(Applied, 2).wantUpdate(1).wantReleased(2),
				push(1, 0, 1).at(1).want(Applied, 3).wantUpdate(1), // clock unchanged
				push(1, 0, 1).at(0).want(Applied, 4).wantUpdate(1), // clocks never go back
				pull(4, 1, 2, 0, true),
				pull(5, 2, 0, 0, false).wantErr(ErrInvalidArgument),
				{op: "cancel", id: 3},
				push(1, 0, 1).at(2).want(Applied, 5).wantUpdate(1), // 3 was cancelled
				push(0, 0, 1).at(-1).wantErr(ErrInvalidArgument),
			},
		},
		{
			name: "ssp staleness 0 is a barrier", c: Consistency{Mode: SSP, Workers: 2}, size: 1, rowSize: 1,
			events: []mev{
				push(0, 0, 1).at(1).want(Applied, 1).wantUpdate(1),
				pull(1, 0, 1, 0, false),
				pull(2, 0, 1, 5, false),
				push(1, 0, 1).at(1).want(Applied, 2).wantUpdate(1).wantReleased(1),
			},
			waiting: 1,
		},
		{
			name: "rejected pushes change nothing", c: Consistency{Mode: Sync, Workers: 2}, size: 4, rowSize: 2,
			events: []mev{
				push(0, 0, 1, 1).sparse(2).wantErr(ErrInvalidArgument), // row out of range
				push(0, 0, 1).sparse(0).wantErr(ErrShapeMismatch),
				push(0, 0, 1, 1, 1).wantErr(ErrShapeMismatch),
				push(0, 0, 1, 1, 1, 1).want(Aggregated, 0),
				push(1, 0, 3, 3, 3, 3).want(Applied, 1).wantUpdate(2, 2, 2, 2),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMachine(tc.c, tc.size, tc.rowSize)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range tc.events {
				where := fmt.Sprintf("event %d (%s worker %d step %d)", i, e.op, e.worker, e.step)
				switch e.op {
				case "cancel":
					m.Cancel(e.id)
				case "pull":
					ready, err := m.Pull(e.id, e.worker, e.clock, e.minVersion)
					if !errors.Is(err, e.err) || (e.err == nil && err != nil) {
						t.Fatalf("%s: err %v, want %v", where, err, e.err)
					}
					if ready != e.ready {
						t.Fatalf("%s: ready %v, want %v", where, ready, e.ready)
					}
				case "push":
					before := m.Version()
					res, err := m.Push(PushEvent{Worker: e.worker, Step: e.step, Clock: e.clock, Rows: e.rows, Grad: e.grad})
					if e.err != nil {
						if !errors.Is(err, e.err) {
							t.Fatalf("%s: err %v, want %v", where, err, e.err)
						}
						if m.Version() != before {
							t.Fatalf("%s: rejected push moved the version", where)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					if res.Outcome != e.outcome || res.Version != e.version {
						t.Fatalf("%s: %v at version %d, want %v at %d", where, res.Outcome, res.Version, e.outcome, e.version)
					}
					if (res.Update != nil) != (e.update != nil) {
						t.Fatalf("%s: update %+v, want %v", where, res.Update, e.update)
					}
					if res.Update != nil {
						if !slices.Equal(res.Update.Grad, e.update) || !slices.Equal(res.Update.Rows, e.upRows) || (res.Update.Rows == nil) != (e.upRows == nil) {
							t.Fatalf("%s: update rows %v grad %v, want rows %v grad %v", where, res.Update.Rows, res.Update.Grad, e.upRows, e.update)
						}
					}
					if !slices.Equal(res.Released, e.released) {
						t.Fatalf("%s: released %v, want %v", where, res.Released, e.released)
					}
				}
			}
			if m.Waiting() != tc.waiting {
				t.Errorf("%d pulls still waiting, want %d", m.Waiting(), tc.waiting)
			}
		})
	}
}

func TestMachineSetVersionDropsPartialStep(t *testing.T) {
	m, err := NewMachine(Consistency{Mode: Sync, Workers: 2}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Push(PushEvent{Worker: 0, Grad: []float32{10, 10}}); err != nil {
		t.Fatal(err)
	}
	m.SetVersion(5)
	if m.Pending() != 0 {
		t.Fatalf("pending %d after SetVersion", m.Pending())
	}
	if _, err := m.Push(PushEvent{Worker: 0, Step: 5, Grad: []float32{1, 1}}); err != nil {
		t.Fatal(err)
	}
	res, err := m.Push(PushEvent{Worker: 1, Step: 5, Grad: []float32{3, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Update.Grad, []float32{2, 2}) || res.Version != 6 {
		t.Errorf("got %v at %d, want [2 2] at 6", res.Update.Grad, res.Version)
	}
}

func TestNewMachineRejects(t *testing.T) {
	for _, c := range []Consistency{
		{Mode: Sync},
		{Mode: Sync, Workers: 2, Backup: 2},
		{Mode: SSP},
		{Mode: SSP, Workers: 1, Staleness: -1},
		{Mode: "bsp"},
	} {
		if _, err := NewMachine(c, 1, 1); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("NewMachine(%+v) = %v, want ErrInvalidArgument", c, err)
		}
	}
	if _, err := NewMachine(Consistency{}, 3, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("size not a multiple of rowSize: %v", err)
	}
}
