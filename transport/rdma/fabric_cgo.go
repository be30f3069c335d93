//go:build rdma && cgo && linux

package rdma

/*
#cgo LDFLAGS: -lfabric
#include <stdlib.h>
#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include "fabric.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flowps/flowps/ps"
)

// libfabric constants, taken from the headers.
const (
	fiRemoteCQData = uint64(C.FI_REMOTE_CQ_DATA)
	fiMRVirtAddr   = uint64(C.FI_MR_VIRT_ADDR)
	fiMRLocal      = uint64(C.FI_MR_LOCAL)
	fiAccessRead   = uint64(C.FI_READ)
	fiAccessWrite  = uint64(C.FI_WRITE)
	fiAccessRecv   = uint64(C.FI_RECV)
	fiAccessSend   = uint64(C.FI_SEND)
	fiAccessRRead  = uint64(C.FI_REMOTE_READ)
	fiAccessRWrite = uint64(C.FI_REMOTE_WRITE)
	fiEAGAIN       = int(C.FI_EAGAIN)
	fiENOMEM       = int(C.FI_ENOMEM)
	fiEACCES       = int(C.FI_EACCES)
	fiEFAULT       = int(C.FI_EFAULT)
	fiENODATA      = int(C.FI_ENODATA)
	fiENOENT       = int(C.FI_ENOENT)
	maxContexts    = 4096
)

// fiError is a libfabric error code with the step that returned it.
type fiError struct {
	where string
	code  int
	prov  int
}

func (e *fiError) Error() string {
	s := fmt.Sprintf("rdma: %s: %s (%d)", e.where, C.GoString(C.fps_strerror(C.int(e.code))), e.code)
	if e.prov != 0 {
		s += fmt.Sprintf(", provider errno %d", e.prov)
	}
	return s
}

func fiErr(where string, ret C.int) error {
	code := int(ret)
	if code < 0 {
		code = -code
	}
	return &fiError{where: where, code: code}
}

// completion is one completion entry delivered to an operation's callback.
type completion struct {
	flags uint64
	len   uint64
	data  uint64
	err   error
}

// fabricInfo summarises what the provider granted.
type fabricInfo struct {
	provider, fabric, domain string
	mrMode                   uint64
	cqDataSize               int
	maxMsgSize               int
	injectSize               int
	iovLimit                 int
	cqWait                   bool
	bell                     bool // waits on a doorbell that peers ring (shm)
}

// fabric owns one endpoint, its completion queue and address vector, and
// the progress goroutine that drains the queue. Operations are posted from
// any goroutine (the domain is FI_THREAD_SAFE); their callbacks run on the
// progress goroutine and must not block.
type fabric struct {
	ep   *C.fps_ep
	info fabricInfo
	log  *slog.Logger

	// postMu is held shared while posting and exclusively while closing, so
	// nothing is posted to a closed endpoint.
	postMu sync.RWMutex
	closed bool

	opMu    sync.Mutex
	ops     []func(completion)
	counted []bool
	pins    []*runtime.Pinner // Go memory an operation sends from
	free    []int64
	active  atomic.Int64 // counted operations in flight

	zeroCopyWrites atomic.Int64 // writes that sent a tensor from Go memory

	onRemote func(imm uint32, n uint64) // remote writedata arrived
	busy     func() bool                // the owner awaits arrivals: keep polling
	onError  func(error)                // an error entry with no operation

	// waitingCold is set while the progress goroutine blocks for up to
	// coldWait with nothing in flight: a post then wakes it (fps_signal).
	waitingCold atomic.Bool
	wakeups     atomic.Int64 // fps_wait calls (tests, idle measurements)

	// bells holds each peer's doorbell (shm), by fabric address; posts to a
	// peer ring it.
	bellMu sync.RWMutex
	bells  map[uint64]*C.fps_bell

	regions []*region

	stop    atomic.Bool
	started bool
	done    chan struct{}
}

// openFabric opens an RDM endpoint of the named provider. node/service
// select the source address (empty: the provider's default).
func openFabric(provider, node, service string, log *slog.Logger) (*fabric, error) {
	cprov := C.CString(provider)
	defer C.free(unsafe.Pointer(cprov))
	var cnode, csvc *C.char
	if node != "" {
		cnode = C.CString(node)
		defer C.free(unsafe.Pointer(cnode))
	}
	if service != "" {
		csvc = C.CString(service)
		defer C.free(unsafe.Pointer(csvc))
	}
	var ep *C.fps_ep
	var ci C.fps_info
	where := make([]byte, 128)
	ret := C.fps_open(cprov, cnode, csvc, maxContexts, &ep, &ci, (*C.char)(unsafe.Pointer(&where[0])), C.size_t(len(where)))
	if ret != 0 {
		w := string(where[:clen(where)])
		err := fiErr(w, ret)
		if c := int(-ret); c == fiENODATA || c == fiENOENT { // no such provider, or no match
			return nil, fmt.Errorf("%w: provider %q is not available here (fi_info -l lists providers): %v", ErrNoProvider, provider, err)
		}
		return nil, err
	}
	f := &fabric{
		ep:  ep,
		log: log,
		info: fabricInfo{
			provider:   C.GoString(&ci.prov_name[0]),
			fabric:     C.GoString(&ci.fabric_name[0]),
			domain:     C.GoString(&ci.domain_name[0]),
			mrMode:     uint64(ci.mr_mode),
			cqDataSize: int(ci.cq_data_size),
			maxMsgSize: int(ci.max_msg_size),
			injectSize: int(ci.inject_size),
			iovLimit:   int(ci.iov_limit),
			cqWait:     ci.cq_wait != 0,
			bell:       ci.bell != 0,
		},
		bells:   map[uint64]*C.fps_bell{},
		ops:     make([]func(completion), maxContexts),
		counted: make([]bool, maxContexts),
		pins:    make([]*runtime.Pinner, maxContexts),
		free:    make([]int64, 0, maxContexts),
		done:    make(chan struct{}),
	}
	for i := maxContexts - 1; i >= 0; i-- {
		f.free = append(f.free, int64(i))
	}
	if f.info.cqDataSize < 4 {
		C.fps_shutdown(ep)
		C.fps_close(ep)
		return nil, fmt.Errorf("rdma: provider %s carries %d bytes of remote CQ data, need 4", provider, f.info.cqDataSize)
	}
	return f, nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// start launches the progress goroutine; callbacks must be set before.
func (f *fabric) start() {
	f.started = true
	go f.progress()
}

// Progress. The progress goroutine reads completions and, when there are
// none, waits for more in C without holding Go's scheduler: tcp and verbs
// block in fi_cq_sread on the provider's wait fd; shm, which has no wait
// object another process can signal, blocks in ppoll on a doorbell (a Unix
// datagram socket) that every peer rings right after posting an operation
// to this endpoint (fps_ring). Each wait is bounded: hotWait, backing off
// to maxHotWait, while operations are in flight or the owner awaits an
// arrival (busy) or an event came within hotWindow, since providers move
// some transfers in steps that need a progress call each (rxm's rendezvous,
// shm without CMA); coldWait otherwise, and a post then wakes the waiter.
// Before waiting while hot it polls spinPolls times, yielding in between:
// a short spin saves the wake-up of a call answered within microseconds,
// and a long one takes the CPU from the very goroutines (and, on shm, peer
// processes) whose work it waits for.
//
// The waits are never Go timers: a time.Sleep under a millisecond became
// a millisecond whenever the process had nothing else to run (the runtime
// parks idle threads in epoll with millisecond timeouts), which was the
// ~1.1 ms floor per call between processes.
const (
	spinPolls  = 16
	hotWait    = 20 * time.Microsecond
	maxHotWait = 500 * time.Microsecond
	coldWait   = 100 * time.Millisecond
	hotWindow  = time.Millisecond
)

func (f *fabric) progress() {
	defer close(f.done)
	var comps [16]C.fps_comp
	last := time.Now()
	empty := 0 // polls since the last event
	wait := hotWait
	hot := func() bool {
		return f.active.Load() > 0 || (f.busy != nil && f.busy()) || time.Since(last) < hotWindow
	}
	for !f.stop.Load() {
		n := int(C.fps_poll(f.ep, &comps[0], C.int(len(comps))))
		if n == 0 {
			empty++
			h := hot()
			if h && empty <= spinPolls {
				runtime.Gosched()
				continue
			}
			timeout := coldWait
			if !h {
				// Announce the cold wait, then look again: a post either
				// sees the flag and signals, or is seen here as hot.
				f.waitingCold.Store(true)
				h = hot()
			}
			if h {
				f.waitingCold.Store(false)
				timeout = wait
				wait = min(2*wait, maxHotWait)
			}
			f.wakeups.Add(1)
			n = int(C.fps_wait(f.ep, &comps[0], C.int(len(comps)), C.int64_t(timeout)))
			f.waitingCold.Store(false)
			if n == 0 {
				continue
			}
		}
		if n < 0 {
			f.log.Warn("rdma: completion queue read failed", "err", fiErr("fi_cq_read", C.int(n)))
			continue
		}
		empty = 0
		wait = hotWait
		last = time.Now()
		for i := 0; i < n; i++ {
			c := comps[i]
			comp := completion{flags: uint64(c.flags), len: uint64(c.len), data: uint64(c.data)}
			if c.err != 0 {
				comp.err = &fiError{where: "completion", code: int(c.err), prov: int(c.prov_errno)}
			}
			if c.ctx < 0 {
				if comp.err != nil {
					if f.onError != nil {
						f.onError(comp.err)
					}
					continue
				}
				if comp.flags&fiRemoteCQData != 0 && f.onRemote != nil {
					f.onRemote(uint32(comp.data), comp.len)
				}
				continue
			}
			f.opMu.Lock()
			fn := f.ops[c.ctx]
			counted := f.counted[c.ctx]
			if pin := f.pins[c.ctx]; pin != nil {
				pin.Unpin()
				f.pins[c.ctx] = nil
			}
			f.ops[c.ctx] = nil
			f.counted[c.ctx] = false
			f.free = append(f.free, int64(c.ctx))
			f.opMu.Unlock()
			if counted {
				f.active.Add(-1)
			}
			if fn != nil {
				fn(comp)
			}
		}
	}
}

// wake makes a progress goroutine in a cold wait look at the queue again:
// an operation was just posted that needs its progress.
func (f *fabric) wake() {
	if f.waitingCold.Load() {
		C.fps_signal(f.ep)
	}
}

// bell returns dest's doorbell, or nil.
func (f *fabric) bell(dest uint64) *C.fps_bell {
	if !f.info.bell {
		return nil
	}
	f.bellMu.RLock()
	b := f.bells[dest]
	f.bellMu.RUnlock()
	return b
}

// post runs one posting function with a fresh context, retrying while the
// provider says FI_EAGAIN (its queues are full until progress drains them).
func (f *fabric) post(ctx context.Context, what string, cb func(completion), do func(ci C.int64_t) C.int) error {
	return f.postOp(ctx, what, true, cb, do)
}

// postOp is post; counted operations (sends and writes, not receives) keep
// the progress goroutine polling until they complete. A nil ctx makes one
// attempt only (errAgain when the queue is full): callbacks, which run on
// the progress goroutine, must post that way, since waiting there for
// queue space would wait for the very progress they block.
func (f *fabric) postOp(ctx context.Context, what string, counted bool, cb func(completion), do func(ci C.int64_t) C.int) error {
	return f.postPinned(ctx, what, counted, nil, cb, do)
}

// postPinned is postOp for an operation that reads Go memory: pin keeps it
// in place until the operation completes (or the fabric closes).
func (f *fabric) postPinned(ctx context.Context, what string, counted bool, pin *runtime.Pinner, cb func(completion), do func(ci C.int64_t) C.int) error {
	backoff := time.Microsecond
	for {
		f.postMu.RLock()
		if f.closed {
			f.postMu.RUnlock()
			return fmt.Errorf("rdma: %s: %w", what, errFabricClosed)
		}
		f.opMu.Lock()
		if len(f.free) == 0 {
			f.opMu.Unlock()
			f.postMu.RUnlock()
			if ctx == nil {
				return fmt.Errorf("rdma: %s: no free operation context: %w", what, errAgain)
			}
			if err := waitBackoff(ctx, &backoff); err != nil {
				return fmt.Errorf("rdma: %s: no free operation context: %w", what, err)
			}
			continue
		}
		ci := f.free[len(f.free)-1]
		f.free = f.free[:len(f.free)-1]
		f.ops[ci] = cb
		f.counted[ci] = counted
		f.pins[ci] = pin
		f.opMu.Unlock()
		if counted {
			f.active.Add(1)
		}
		ret := do(C.int64_t(ci))
		f.postMu.RUnlock()
		if ret == 0 {
			f.wake()
			return nil
		}
		if counted {
			f.active.Add(-1)
		}
		f.opMu.Lock()
		f.ops[ci] = nil
		f.counted[ci] = false
		f.pins[ci] = nil
		f.free = append(f.free, ci)
		f.opMu.Unlock()
		if int(-ret) != fiEAGAIN {
			return fiErr(what, ret)
		}
		if ctx == nil {
			return fmt.Errorf("rdma: %s: %w", what, errAgain)
		}
		if err := waitBackoff(ctx, &backoff); err != nil {
			return fmt.Errorf("rdma: %s: provider queue full: %w", what, err)
		}
	}
}

func waitBackoff(ctx context.Context, d *time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if *d < 50*time.Microsecond {
		// Short waits: yield; a timer would round up to much more.
		for i := 0; i < 8; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		time.Sleep(*d)
		*d *= 2
		return nil
	}
	t := time.NewTimer(*d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if *d < time.Millisecond {
		*d *= 2
	}
	return nil
}

var (
	errFabricClosed = errors.New("fabric endpoint closed")
	errAgain        = errors.New("provider queue full")
)

func (f *fabric) name() ([]byte, error) {
	buf := make([]byte, 256)
	n := C.size_t(len(buf))
	if ret := C.fps_getname(f.ep, unsafe.Pointer(&buf[0]), &n); ret != 0 {
		return nil, fiErr("fi_getname", ret)
	}
	return buf[:n], nil
}

// insert adds a peer's endpoint name to the address vector.
func (f *fabric) insert(name []byte) (uint64, error) {
	if len(name) == 0 {
		return 0, fmt.Errorf("rdma: empty fabric address: %w", ps.ErrInvalidArgument)
	}
	var a C.uint64_t
	f.postMu.RLock()
	defer f.postMu.RUnlock()
	if f.closed {
		return 0, errFabricClosed
	}
	ret := C.fps_av_insert(f.ep, unsafe.Pointer(&name[0]), &a)
	if ret != 1 { // fi_av_insert returns the number of addresses inserted
		if ret >= 0 {
			return 0, fmt.Errorf("rdma: fi_av_insert inserted %d addresses, want 1: %w", int(ret), ps.ErrInvalidArgument)
		}
		return 0, fiErr("fi_av_insert", ret)
	}
	if f.info.bell {
		b := C.fps_bell_new(unsafe.Pointer(&name[0]), C.size_t(len(name)))
		f.bellMu.Lock()
		if old := f.bells[uint64(a)]; old != nil {
			C.fps_bell_free(old)
		}
		f.bells[uint64(a)] = b
		f.bellMu.Unlock()
	}
	return uint64(a), nil
}

func (f *fabric) remove(addr uint64) {
	f.postMu.RLock()
	defer f.postMu.RUnlock()
	if !f.closed {
		C.fps_av_remove(f.ep, C.uint64_t(addr))
	}
	f.bellMu.Lock()
	if b := f.bells[addr]; b != nil {
		C.fps_bell_free(b)
		delete(f.bells, addr)
	}
	f.bellMu.Unlock()
}

// region is memory registered with the domain: mmap'd, never the Go heap.
type region struct {
	buf  []byte
	mr   unsafe.Pointer
	key  uint64
	desc unsafe.Pointer
	// base is the address a peer names offset 0 of this region by: the
	// virtual address under FI_MR_VIRT_ADDR, else 0.
	base uint64
}

var keySeq atomic.Uint64

// register maps size bytes and registers them for the given access.
func (f *fabric) register(size int, access uint64) (*region, error) {
	buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("rdma: mmap %d bytes: %w", size, err)
	}
	return f.registerMapped(buf, access)
}

// registerMapped registers memory mapped with unix.Mmap; the region owns
// it (release and close unmap it), also when registration fails.
func (f *fabric) registerMapped(buf []byte, access uint64) (*region, error) {
	size := len(buf)
	r := &region{buf: buf}
	var key C.uint64_t
	f.postMu.RLock()
	if f.closed {
		f.postMu.RUnlock()
		unix.Munmap(buf)
		return nil, errFabricClosed
	}
	ret := C.fps_mr_reg(f.ep, unsafe.Pointer(&buf[0]), C.size_t(size), C.uint64_t(access),
		C.uint64_t(keySeq.Add(1)), &r.mr, &key, &r.desc)
	f.postMu.RUnlock()
	if ret != 0 {
		unix.Munmap(buf)
		err := fiErr("fi_mr_reg", ret)
		if c := int(-ret); c == fiENOMEM || c == fiEFAULT || c == fiEACCES {
			return nil, fmt.Errorf("%w (registering %d bytes; %s)", err, size, memlockHint())
		}
		return nil, err
	}
	r.key = uint64(key)
	if f.info.mrMode&fiMRVirtAddr != 0 {
		r.base = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	f.opMu.Lock()
	f.regions = append(f.regions, r)
	f.opMu.Unlock()
	return r, nil
}

// release deregisters and unmaps a region before the fabric closes.
func (f *fabric) release(r *region) {
	f.opMu.Lock()
	found := false
	for i, x := range f.regions {
		if x == r {
			f.regions = append(f.regions[:i], f.regions[i+1:]...)
			found = true
			break
		}
	}
	f.opMu.Unlock()
	if !found {
		return
	}
	f.postMu.RLock()
	C.fps_mr_close(r.mr)
	f.postMu.RUnlock()
	unix.Munmap(r.buf)
}

func (r *region) ptr(off int) unsafe.Pointer { return unsafe.Pointer(&r.buf[off]) }

func (f *fabric) send(ctx context.Context, r *region, off, n int, dest uint64, cb func(completion)) error {
	return f.post(ctx, "fi_send", cb, func(ci C.int64_t) C.int {
		return C.fps_send(f.ep, r.ptr(off), C.size_t(n), r.desc, C.uint64_t(dest), ci, f.bell(dest))
	})
}

func (f *fabric) recv(ctx context.Context, r *region, off, n int, cb func(completion)) error {
	return f.postOp(ctx, "fi_recv", false, cb, func(ci C.int64_t) C.int {
		return C.fps_recv(f.ep, r.ptr(off), C.size_t(n), r.desc, ci)
	})
}

func (f *fabric) writedata(ctx context.Context, r *region, off, n int, imm uint32, dest, raddr, rkey uint64, cb func(completion)) error {
	return f.post(ctx, "fi_writedata", cb, func(ci C.int64_t) C.int {
		return C.fps_writedata(f.ep, r.ptr(off), C.size_t(n), r.desc, C.uint64_t(imm),
			C.uint64_t(dest), C.uint64_t(raddr), C.uint64_t(rkey), ci, f.bell(dest))
	})
}

// isSHM reports whether this is the shm provider.
func (f *fabric) isSHM() bool { return f.info.provider == ProviderSHM }

// shmMinWrite is the smallest write this package posts on shm. libfabric
// 1.17's shm moves writes of up to 4 KiB (its inject size) through a path
// that does not check the target's verdict on the key: a write with a key
// the target does not know crashed the target process (SIGSEGV). Longer
// writes take the path that checks it. So every shm write, notices
// included, is at least this long, and shm extents are two pages.
const shmMinWrite = pageSize + 8

// writeLen is how many bytes to write for a frame of n bytes in an extent
// of room bytes: n, or on shm at least shmMinWrite (the rest of the
// extent is the writer's own, unread by the peer); notice makes it a
// notice only (the frame is in shared memory already).
func (f *fabric) writeLen(n, room int, notice bool) int {
	if !f.isSHM() {
		return n
	}
	if notice {
		n = 0
	}
	return min(max(n, shmMinWrite), room)
}

// zeroCopy reports whether writes may send from unregistered (Go) memory.
func (f *fabric) zeroCopy() bool { return f.info.mrMode&fiMRLocal == 0 && f.info.iovLimit >= 3 }

// writedataGo writes r[off:off+head], then data (Go memory, pinned while
// the write is in flight), then r[off+head+len(data):off+n], to one remote
// range of n bytes: a frame whose largest tensor is sent without copying it
// into the staging area. Only when zeroCopy().
func (f *fabric) writedataGo(ctx context.Context, r *region, off, head int, data []byte, n int, imm uint32, dest, raddr, rkey uint64, cb func(completion)) error {
	tail := off + head + len(data)
	pin := new(runtime.Pinner)
	pin.Pin(&data[0])
	// Counted before posting: the peer may see the write before this
	// goroutine runs again.
	f.zeroCopyWrites.Add(1)
	err := f.postPinned(ctx, "fi_writemsg", true, pin, cb, func(ci C.int64_t) C.int {
		return C.fps_writedata3(f.ep, r.ptr(off), C.size_t(head), unsafe.Pointer(&data[0]), C.size_t(len(data)),
			r.ptr(tail), C.size_t(off+n-tail), r.desc, C.uint64_t(imm), C.uint64_t(dest), C.uint64_t(raddr), C.uint64_t(rkey), ci, f.bell(dest))
	})
	if err != nil {
		f.zeroCopyWrites.Add(-1)
		pin.Unpin()
		return err
	}
	return nil
}

// close stops progress, closes the endpoint, releases every region and the
// domain. Pending operations get no completion; their owners fail them.
func (f *fabric) close() {
	f.postMu.Lock()
	if f.closed {
		f.postMu.Unlock()
		return
	}
	f.closed = true
	f.postMu.Unlock()
	f.stop.Store(true)
	C.fps_signal(f.ep)
	if f.started {
		<-f.done
	}
	C.fps_shutdown(f.ep)
	f.opMu.Lock()
	regs := f.regions
	f.regions = nil
	for i, pin := range f.pins {
		if pin != nil { // the endpoint is closed: nothing reads it any more
			pin.Unpin()
			f.pins[i] = nil
		}
	}
	f.opMu.Unlock()
	for _, r := range regs {
		C.fps_mr_close(r.mr)
		unix.Munmap(r.buf)
	}
	C.fps_close(f.ep)
	f.bellMu.Lock()
	for a, b := range f.bells {
		C.fps_bell_free(b)
		delete(f.bells, a)
	}
	f.bellMu.Unlock()
}

// libfabricVersion returns the run-time library's version, "major.minor".
func libfabricVersion() string {
	v := uint32(C.fps_version())
	return fmt.Sprintf("%d.%d", v>>16, v&0xffff)
}

// Available reports whether this binary can use libfabric: true in a build
// with the rdma tag (the library is linked, so the binary would not have
// started without it).
func Available() bool { return true }

// libfabricInfo returns the library version and its providers with their
// endpoint types, deduplicated, as fi_info lists them.
func libfabricInfo() (version string, providers []string, err error) {
	buf := make([]byte, 16<<10)
	if ret := C.fps_providers((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))); ret != 0 {
		return libfabricVersion(), nil, fiErr("fi_getinfo", ret)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(buf[:clen(buf)]), "\n") {
		if line != "" && !seen[line] {
			seen[line] = true
			providers = append(providers, line)
		}
	}
	return libfabricVersion(), providers, nil
}
