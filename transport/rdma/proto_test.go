package rdma

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

func TestPushPullBodiesRoundTrip(t *testing.T) {
	push := &ps.PushRequest{ClientID: "w1", Seq: 9, Worker: 2, Clock: 5, Parts: []ps.PushPart{
		{Key: ps.PartKey{Var: "a", Index: 1}, Grad: []float32{1, 2, 3}, Step: 4},
		{Key: ps.PartKey{Var: "emb", Index: 0}, Rows: []int64{3, 7}, Grad: []float32{1, 2, 3, 4}},
	}}
	b := make([]byte, pushSize(push))
	if n := encodePush(b, push); n != len(b) {
		t.Fatalf("encodePush wrote %d bytes, pushSize said %d", n, len(b))
	}
	got, err := decodePush(b)
	if err != nil || !reflect.DeepEqual(got, push) {
		t.Fatalf("decodePush = %+v, %v; want %+v", got, err, push)
	}
	pull := &ps.PullRequest{ClientID: "w1", Worker: 1, Clock: 3, Parts: []ps.PullPart{{Key: ps.PartKey{Var: "a"}, MinVersion: 2}, {Key: ps.PartKey{Var: "e", Index: 3}, Rows: []int64{}}}}
	b = make([]byte, pullSize(pull))
	if n := encodePull(b, pull); n != len(b) {
		t.Fatalf("encodePull wrote %d, want %d", n, len(b))
	}
	gp, err := decodePull(b)
	if err != nil || !reflect.DeepEqual(gp, pull) {
		t.Fatalf("decodePull = %+v, %v", gp, err)
	}
	resp := &ps.PullResponse{Parts: []ps.PartValues{{Key: ps.PartKey{Var: "a", Index: 2}, Version: 7, Values: []float32{0.5, -1}}}}
	b = make([]byte, pullRespSize(resp))
	encodePullResp(b, resp)
	gr, err := decodePullResp(b)
	if err != nil || !reflect.DeepEqual(gr, resp) {
		t.Fatalf("decodePullResp = %+v, %v", gr, err)
	}
	e := make([]byte, errSize(ps.CodeStale, "stale step 3"))
	encodeErr(e, ps.CodeStale, "stale step 3")
	if err := decodeErr(e); !errors.Is(err, ps.ErrStale) {
		t.Fatalf("decodeErr = %v, want ErrStale", err)
	}
}

// Bodies come from peers: any corruption must give an error, never a panic
// or a huge allocation.
func TestDecodersRejectGarbage(t *testing.T) {
	push := &ps.PushRequest{ClientID: "w", Parts: []ps.PushPart{{Key: ps.PartKey{Var: "a"}, Rows: []int64{1}, Grad: []float32{1, 2}}}}
	good := make([]byte, pushSize(push))
	encodePush(good, push)
	rng := rand.New(rand.NewSource(1))
	decoders := map[string]func([]byte) error{
		"push":     func(b []byte) error { _, err := decodePush(b); return err },
		"pull":     func(b []byte) error { _, err := decodePull(b); return err },
		"pullresp": func(b []byte) error { _, err := decodePullResp(b); return err },
		"versions": func(b []byte) error { _, err := decodeVersions(b); return err },
		"ctrl":     func(b []byte) error { _, err := decodeCtrl(b); return err },
	}
	for _, dec := range decoders {
		for i := 0; i < 3000; i++ {
			b := append([]byte(nil), good...)
			switch i % 3 {
			case 0:
				b = b[:rng.Intn(len(b))]
			case 1:
				b[rng.Intn(len(b))] = byte(rng.Intn(256))
				binary.LittleEndian.PutUint32(b[rng.Intn(len(b)-4):], rng.Uint32())
			case 2:
				rng.Read(b)
			}
			_ = dec(b) // must not panic
		}
	}
	if _, err := decodePush(good[:len(good)-1]); err == nil {
		t.Fatal("truncated push decoded")
	}
	if _, err := decodePush(append(good, 0)); err == nil {
		t.Fatal("push with a trailing byte decoded")
	}
}

func TestFrameTornDetection(t *testing.T) {
	buf := make([]byte, 4096)
	copy(buf[headerSize:], "hello")
	n := putFrame(buf, frameHeader{seq: 42, kind: framePush, body: 5, room: 4096})
	h, err := readFrame(buf, n)
	if err != nil || h.seq != 42 || h.body != 5 || h.kind != framePush {
		t.Fatalf("readFrame = %+v, %v", h, err)
	}
	binary.LittleEndian.PutUint64(buf[n-trailerSize:], 41)
	if _, err := readFrame(buf, n); !errors.Is(err, ErrTorn) {
		t.Fatalf("mismatched back word: %v, want ErrTorn", err)
	}
	binary.LittleEndian.PutUint64(buf[16:], 1<<40)
	if _, err := readFrame(buf, 4096); !errors.Is(err, ErrTorn) {
		t.Fatalf("body length past the area: %v, want ErrTorn", err)
	}
	if _, err := readFrame(buf[:10], 10); err == nil {
		t.Fatal("a 10-byte frame was accepted")
	}
}

// TestSeqlockUnderConcurrentWrites rewrites one frame over and over, back
// word first and front word last, each time with a new version and a body
// filled with that version, while a reader copies it word by word front to
// back (as a one-sided read does) and checks it. Every frame the reader
// accepts must be whole; torn ones must be caught.
func TestSeqlockUnderConcurrentWrites(t *testing.T) {
	const bodyWords = 512
	words := make([]atomic.Uint64, (headerSize+8*bodyWords+trailerSize)/8)
	write := func(v uint64) {
		words[len(words)-1].Store(v) // back word first
		for i := headerSize / 8; i < len(words)-1; i++ {
			words[i].Store(v)
		}
		words[1].Store(uint64(framePull))
		words[2].Store(8 * bodyWords)
		words[3].Store(uint64(8 * len(words)))
		words[0].Store(v) // front word last
	}
	write(1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := uint64(2); !stop.Load(); v++ {
			write(v)
			// Yield after each write, so that some reads fall between writes.
			runtime.Gosched()
		}
	}()
	copyBuf := make([]byte, 8*len(words))
	accepted, torn := 0, 0
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) || accepted < 10 || torn == 0 {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			break
		}
		for i := range words {
			binary.LittleEndian.PutUint64(copyBuf[8*i:], words[i].Load())
		}
		h, err := readFrame(copyBuf, len(copyBuf))
		if err != nil {
			if !errors.Is(err, ErrTorn) {
				t.Fatalf("unexpected error: %v", err)
			}
			torn++
			continue
		}
		accepted++
		for i := 0; i < bodyWords; i++ {
			if w := binary.LittleEndian.Uint64(copyBuf[headerSize+8*i:]); w != h.seq {
				t.Fatalf("accepted frame version %d holds word %d = %d: a torn read got through", h.seq, i, w)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d whole frames accepted, %d torn ones caught", accepted, torn)
	if accepted == 0 {
		t.Fatal("no whole frame was ever read")
	}
}

func TestExtents(t *testing.T) {
	e := newExtents(10, 3)
	ctx := context.Background()
	a, _ := e.alloc(ctx, 4)
	b, _ := e.alloc(ctx, 4)
	if a == b {
		t.Fatal("overlapping extents")
	}
	if _, err := e.alloc(ctx, 11); !errors.Is(err, ps.ErrTooLarge) {
		t.Fatalf("alloc beyond the area: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := e.alloc(short, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("alloc with no room: %v, want to wait until the deadline", err)
	}
	got := make(chan int, 1)
	go func() {
		p, err := e.alloc(ctx, 6)
		if err != nil {
			p = -1
		}
		got <- p
	}()
	e.release(a, 4)
	e.release(b, 4)
	if p := <-got; p != 0 {
		t.Fatalf("alloc after release = %d, want 0 (coalesced)", p)
	}
	// Credits: at most 3 out at once, even when pages are free.
	e2 := newExtents(100, 3)
	for i := 0; i < 3; i++ {
		if _, err := e2.alloc(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	short2, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, err := e2.alloc(short2, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a fourth extent with 3 credits: %v", err)
	}
}

func TestAddrAndConfig(t *testing.T) {
	name := []byte{2, 0, 0x9c, 0x4f, 127, 0, 0, 1}
	addr := FormatAddr(ProviderTCP, name)
	prov, got, err := ParseAddr(addr)
	if err != nil || prov != ProviderTCP || !reflect.DeepEqual(got, name) {
		t.Fatalf("ParseAddr(%q) = %q, %x, %v", addr, prov, got, err)
	}
	for _, bad := range []string{"", "tcp;ofi_rxm", "udp|00", "shm|0", "shm|zz", "shm|"} {
		if _, _, err := ParseAddr(bad); !errors.Is(err, ps.ErrInvalidArgument) {
			t.Errorf("ParseAddr(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	if err := (ServerConfig{Provider: "psm2"}).Validate(); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Errorf("unknown provider accepted: %v", err)
	}
	if err := (DialerConfig{PingInterval: time.Second, DeadAfter: time.Second}).Validate(); err == nil {
		t.Error("DeadAfter ≤ PingInterval accepted")
	}
	if err := DefaultServerConfig().Validate(); err != nil {
		t.Error(err)
	}
	if err := DefaultDialerConfig().Validate(); err != nil {
		t.Error(err)
	}
}

func TestCreateCoversEveryField(t *testing.T) {
	// If ps grows a field, createBody must learn it: these counts are the
	// fields it carries.
	for typ, want := range map[reflect.Type]int{
		reflect.TypeOf(ps.CreateRequest{}): 2,
		reflect.TypeOf(ps.VariableSpec{}):  8,
		reflect.TypeOf(ps.Initializer{}):   7,
		reflect.TypeOf(ps.OptimizerSpec{}): 11,
		reflect.TypeOf(ps.Consistency{}):   4,
	} {
		if typ.NumField() != want {
			t.Errorf("%v has %d fields, createBody carries %d: update proto.go", typ, typ.NumField(), want)
		}
	}
	nan := float32(math.NaN())
	req := &ps.CreateRequest{Parts: []int{0, 3}, Spec: ps.VariableSpec{
		Name: "w", Shape: []int64{3, 4},
		Init:           ps.Initializer{Kind: ps.InitNormal, Value: nan, Min: -1, Max: float32(math.Inf(1)), Mean: 0.5, Stddev: 2, Seed: -7},
		Optimizer:      ps.OptimizerSpec{Kind: ps.OptAdam, LR: 0.1, Momentum: 0.2, Nesterov: true, Beta1: 0.3, Beta2: 0.4, Epsilon: 0.5, InitialAccumulator: 0.6, L1: 0.7, L2: 0.8, LRPower: 0.9},
		Consistency:    ps.Consistency{Mode: ps.SSP, Workers: 3, Backup: 1, Staleness: 2},
		AllowNonFinite: true, MinPartitionBytes: 10, MaxPartitionBytes: 20,
	}}
	b, err := createBody(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCreate(b)
	if err != nil {
		t.Fatal(err)
	}
	if math.Float32bits(got.Spec.Init.Value) != math.Float32bits(nan) {
		t.Fatalf("NaN initializer value came back as %v", got.Spec.Init.Value)
	}
	got.Spec.Init.Value, req.Spec.Init.Value = 0, 0
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("decodeCreate = %+v\nwant %+v", got, req)
	}
}

func TestMemlockCheck(t *testing.T) {
	if err := checkMemlock(ProviderSHM, 1<<40); err != nil {
		t.Fatalf("shm does not pin memory, yet: %v", err)
	}
	lim, unlimited, err := memlockLimit()
	if err != nil || unlimited {
		t.Skipf("memlock limit unlimited or unknown (%v)", err)
	}
	err = checkMemlock(ProviderVerbs, int64(lim)+1<<20)
	if !errors.Is(err, ErrMemlock) || !strings.Contains(err.Error(), "ulimit -l") {
		t.Fatalf("verbs over the memlock limit: %v", err)
	}
}
