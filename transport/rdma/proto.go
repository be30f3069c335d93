package rdma

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
	"unsafe"

	"github.com/flowps/flowps/ps"
)

// Wire layout. Everything is little-endian; float32 tensors are copied as
// raw bytes (the package refuses big-endian hosts in init).
//
// A data frame lives in a staging area at a page-aligned offset:
//
//	[0:8)    seq    front version word: the request's sequence number
//	[8:12)   kind   frameCreate, framePull, framePush, or a response kind
//	[12:16)  flags  0
//	[16:24)  body   length of the body in bytes
//	[24:32)  room   bytes reserved at this offset for the frame and its reply
//	[32:40)  timeout nanoseconds the server may spend (0: none)
//	[40:40+body) body
//	then padding to 8 bytes and the back version word, equal to seq.
//
// The writer fills the frame back to front (back word first, front word
// last); a reader that sees front == back == the expected seq knows no
// write overlapped its copy. A mismatch is ErrTorn and the request is sent
// again (pushes keep their (ClientID, Seq), so the server applies them once).
const (
	pageSize     = 4096
	pageBits     = 20 // low bits of a client→server immediate: page index
	clientBits   = 12 // high bits: the client index the server assigned
	maxClients   = 1<<clientBits - 1
	maxAreaBytes = int64(pageSize) << pageBits // 4 GiB
	minAreaBytes = 16 * pageSize
	headerSize   = 40
	trailerSize  = 8
	maxNameLen   = 256
	ctrlSize     = 512        // one control message buffer
	magic        = 0x31535046 // "FPS1"
)

// Frame kinds.
const (
	frameCreate uint32 = 1
	framePull   uint32 = 2
	framePush   uint32 = 3
	frameProbe  uint32 = 4    // empty request that checks the data path on connect
	respOK      uint32 = 0x81 // body: the method's response
	respErr     uint32 = 0x82 // body: code string, message string
	respNeed    uint32 = 0x83 // body: u64 room the response needs
	respTorn    uint32 = 0x84 // the request arrived torn; send it again
)

// Control message kinds (sent with fi_send into posted receive buffers).
const (
	ctrlHello   uint8 = 1
	ctrlWelcome uint8 = 2
	ctrlPing    uint8 = 3
	ctrlPong    uint8 = 4
	ctrlBye     uint8 = 5
	ctrlCancel  uint8 = 6
	ctrlByeAck  uint8 = 7 // the peer will send nothing more; close now
)

func init() {
	var x uint16 = 1
	if *(*byte)(unsafe.Pointer(&x)) != 1 {
		panic("rdma: big-endian hosts are not supported") // a build property, never peer input
	}
}

// frameLen is the size of a frame with a body of n bytes.
func frameLen(n int) int { return headerSize + align8(n) + trailerSize }

func align8(n int) int { return (n + 7) &^ 7 }
func align4(n int) int { return (n + 3) &^ 3 }

// strSize is the encoded size of a string: length word and padded bytes.
func strSize(s string) int { return 4 + align4(len(s)) }

func pages(n int) int     { return (n + pageSize - 1) / pageSize }
func roundPage(n int) int { return pages(n) * pageSize }

// frameHeader is a decoded frame header.
type frameHeader struct {
	seq     uint64
	kind    uint32
	body    int
	room    int
	timeout int64
}

// putFrame writes header and back word around a body already at
// buf[headerSize:headerSize+body]. The back word goes first, the front
// word last.
func putFrame(buf []byte, h frameHeader) int {
	n := frameLen(h.body)
	binary.LittleEndian.PutUint64(buf[n-trailerSize:], h.seq)
	for i := headerSize + h.body; i < n-trailerSize; i++ {
		buf[i] = 0
	}
	binary.LittleEndian.PutUint32(buf[8:], h.kind)
	binary.LittleEndian.PutUint32(buf[12:], 0)
	binary.LittleEndian.PutUint64(buf[16:], uint64(h.body))
	binary.LittleEndian.PutUint64(buf[24:], uint64(h.room))
	binary.LittleEndian.PutUint64(buf[32:], uint64(h.timeout))
	binary.LittleEndian.PutUint64(buf[0:], h.seq)
	return n
}

// readFrame checks a frame at the start of buf (at most limit bytes may
// belong to it) and returns its header. It never reads past buf.
func readFrame(buf []byte, limit int) (frameHeader, error) {
	var h frameHeader
	if limit > len(buf) {
		limit = len(buf)
	}
	if limit < headerSize+trailerSize {
		return h, ps.Errorf(ps.ErrInvalidArgument, "rdma: frame space %d bytes is below the minimum", limit)
	}
	h.seq = binary.LittleEndian.Uint64(buf[0:])
	h.kind = binary.LittleEndian.Uint32(buf[8:])
	body := binary.LittleEndian.Uint64(buf[16:])
	room := binary.LittleEndian.Uint64(buf[24:])
	h.timeout = int64(binary.LittleEndian.Uint64(buf[32:]))
	if body > uint64(limit) || frameLen(int(body)) > limit {
		return h, fmt.Errorf("%w: body of %d bytes overruns the %d bytes available", ErrTorn, body, limit)
	}
	h.body = int(body)
	if room > uint64(limit) {
		room = uint64(limit)
	}
	h.room = int(room)
	back := binary.LittleEndian.Uint64(buf[frameLen(h.body)-trailerSize:])
	if back != h.seq {
		return h, fmt.Errorf("%w: front version %d, back version %d", ErrTorn, h.seq, back)
	}
	return h, nil
}

// writer appends little-endian values to a byte slice of known capacity.
type writer struct {
	b []byte
	n int
}

func (w *writer) u32(v uint32)  { binary.LittleEndian.PutUint32(w.b[w.n:], v); w.n += 4 }
func (w *writer) u64(v uint64)  { binary.LittleEndian.PutUint64(w.b[w.n:], v); w.n += 8 }
func (w *writer) i64(v int64)   { w.u64(uint64(v)) }
func (w *writer) f32(f float32) { w.u32(math.Float32bits(f)) }
func (w *writer) bool(v bool) { // a whole word, to keep alignment
	if v {
		w.u32(1)
	} else {
		w.u32(0)
	}
}
func (w *writer) str(s string) {
	w.u32(uint32(len(s)))
	w.n += copy(w.b[w.n:], s)
	for ; w.n%4 != 0; w.n++ {
		w.b[w.n] = 0 // strings are padded so that float data stays 4-aligned
	}
}
func (w *writer) rows(r []int64) {
	if r == nil {
		w.i64(-1)
		return
	}
	w.i64(int64(len(r)))
	for _, x := range r {
		w.i64(x)
	}
}
func (w *writer) floats(f []float32) {
	if f == nil {
		w.u64(nilCount) // nil and empty differ, as they do for rows
		return
	}
	w.u64(uint64(len(f)))
	w.n += copy(w.b[w.n:], f32bytes(f))
}

// floatsGap writes f's count but leaves its data out (the caller sends it
// from f itself) and returns where the data belongs.
func (w *writer) floatsGap(f []float32) int {
	w.u64(uint64(len(f)))
	at := w.n
	w.n += 4 * len(f)
	return at
}

// zeroCopyMin is the smallest tensor sent straight from Go memory rather
// than copied into the staging area; below it a copy is cheaper than the
// pinning and the extra segments.
const zeroCopyMin = 256 << 10

// gap is a body's tensor sent from Go memory: data belongs at body offset
// off. data is nil when everything was copied.
type gap struct {
	off  int
	data []byte
}

// pickGap chooses the largest of lens ≥ zeroCopyMin bytes (index, or -1).
func pickGap(n int, size func(i int) int) int {
	best, bestLen := -1, zeroCopyMin-1
	for i := 0; i < n; i++ {
		if l := size(i); l > bestLen {
			best, bestLen = i, l
		}
	}
	return best
}

func f32bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// reader decodes what writer wrote from bytes a peer sent: every length is
// checked against what remains, so a corrupt body yields an error.
type reader struct {
	b   []byte
	n   int
	err error
	// alias makes floats return views of b (when 4-aligned) instead of
	// copies.
	alias bool
}

func (r *reader) need(k int) bool {
	if r.err != nil {
		return false
	}
	if k < 0 || k > len(r.b)-r.n {
		r.err = ps.Errorf(ps.ErrInvalidArgument, "rdma: truncated body (need %d bytes at %d of %d)", k, r.n, len(r.b))
		return false
	}
	return true
}
func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.n:])
	r.n += 4
	return v
}
func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.n:])
	r.n += 8
	return v
}
func (r *reader) i64() int64   { return int64(r.u64()) }
func (r *reader) f32() float32 { return math.Float32frombits(r.u32()) }
func (r *reader) bool() bool {
	v := r.u32()
	if v > 1 {
		r.err = ps.Errorf(ps.ErrInvalidArgument, "rdma: bad bool byte %d", v)
	}
	return v == 1
}
func (r *reader) str() string {
	n := int(r.u32())
	if !r.need(align4(n)) {
		return ""
	}
	s := string(r.b[r.n : r.n+n])
	for _, c := range r.b[r.n+n : r.n+align4(n)] {
		if c != 0 {
			r.err = ps.Errorf(ps.ErrInvalidArgument, "rdma: non-zero string padding")
			return ""
		}
	}
	r.n += align4(n)
	return s
}
func (r *reader) count(elem int) int {
	v := r.u64()
	if r.err != nil {
		return 0
	}
	if v > uint64(len(r.b)-r.n)/uint64(elem) {
		r.err = ps.Errorf(ps.ErrInvalidArgument, "rdma: count %d overruns the body", v)
		return 0
	}
	return int(v)
}
func (r *reader) rows() []int64 {
	v := r.i64()
	if r.err != nil || v == -1 {
		return nil
	}
	if v < 0 || v > int64(len(r.b)-r.n)/8 {
		r.err = ps.Errorf(ps.ErrInvalidArgument, "rdma: row count %d overruns the body", v)
		return nil
	}
	out := make([]int64, v)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(r.b[r.n:]))
		r.n += 8
	}
	return out
}
func (r *reader) floats() []float32 {
	if r.need(8) && binary.LittleEndian.Uint64(r.b[r.n:]) == nilCount {
		r.n += 8
		return nil
	}
	n := r.count(4)
	if r.err != nil {
		return nil
	}
	if n == 0 {
		return []float32{}
	}
	src := r.b[r.n : r.n+4*n]
	r.n += 4 * n
	if p := unsafe.Pointer(&src[0]); uintptr(p)%4 == 0 {
		if r.alias {
			return unsafe.Slice((*float32)(p), n)[:n:n]
		}
		// Appending to nil allocates without first zeroing what it copies.
		return append([]float32(nil), unsafe.Slice((*float32)(p), n)...)
	}
	out := make([]float32, n)
	copy(f32bytes(out), src)
	return out
}
func (r *reader) done() error {
	if r.err == nil && r.n != len(r.b) {
		r.err = ps.Errorf(ps.ErrInvalidArgument, "rdma: %d trailing bytes in body", len(r.b)-r.n)
	}
	return r.err
}

func rowsSize(r []int64) int { return 8 + 8*len(r) }

// nilCount is the element count that encodes a nil float slice.
const nilCount = ^uint64(0)

// Request bodies.

// createBody encodes a CreateRequest field by field: floats keep their bit
// patterns (JSON cannot carry NaN or Inf). TestCreateCoversEveryField fails
// when ps adds a field this does not carry.
func createBody(req *ps.CreateRequest) ([]byte, error) {
	sp := &req.Spec
	n := strSize(sp.Name) + 4 + 8*len(sp.Shape) +
		strSize(string(sp.Init.Kind)) + 5*4 + 8 +
		strSize(string(sp.Optimizer.Kind)) + 10*4 + 4 +
		strSize(string(sp.Consistency.Mode)) + 3*8 +
		4 + 2*8 + 4 + 8*len(req.Parts)
	w := writer{b: make([]byte, n)}
	w.str(sp.Name)
	w.u32(uint32(len(sp.Shape)))
	for _, d := range sp.Shape {
		w.i64(d)
	}
	in := &sp.Init
	w.str(string(in.Kind))
	for _, f := range []float32{in.Value, in.Min, in.Max, in.Mean, in.Stddev} {
		w.f32(f)
	}
	w.i64(in.Seed)
	o := &sp.Optimizer
	w.str(string(o.Kind))
	for _, f := range []float32{o.LR, o.Momentum, o.Beta1, o.Beta2, o.Epsilon, o.InitialAccumulator, o.L1, o.L2, o.LRPower} {
		w.f32(f)
	}
	w.f32(0) // reserved
	w.bool(o.Nesterov)
	c := &sp.Consistency
	w.str(string(c.Mode))
	w.i64(int64(c.Workers))
	w.i64(int64(c.Backup))
	w.i64(int64(c.Staleness))
	w.bool(sp.AllowNonFinite)
	w.i64(sp.MinPartitionBytes)
	w.i64(sp.MaxPartitionBytes)
	w.u32(uint32(len(req.Parts)))
	for _, p := range req.Parts {
		w.i64(int64(p))
	}
	if w.n != n {
		return nil, fmt.Errorf("rdma: create encoding wrote %d bytes, sized %d", w.n, n)
	}
	return w.b, nil
}

func decodeCreate(b []byte) (*ps.CreateRequest, error) {
	r := reader{b: b}
	req := &ps.CreateRequest{}
	sp := &req.Spec
	sp.Name = r.str()
	if n := int(r.u32()); r.need(8 * n) {
		if n > 0 {
			sp.Shape = make([]int64, n)
		}
		for i := range sp.Shape {
			sp.Shape[i] = r.i64()
		}
	}
	in := &sp.Init
	in.Kind = ps.InitKind(r.str())
	for _, f := range []*float32{&in.Value, &in.Min, &in.Max, &in.Mean, &in.Stddev} {
		*f = r.f32()
	}
	in.Seed = r.i64()
	o := &sp.Optimizer
	o.Kind = ps.OptimizerKind(r.str())
	for _, f := range []*float32{&o.LR, &o.Momentum, &o.Beta1, &o.Beta2, &o.Epsilon, &o.InitialAccumulator, &o.L1, &o.L2, &o.LRPower} {
		*f = r.f32()
	}
	r.f32()
	o.Nesterov = r.bool()
	c := &sp.Consistency
	c.Mode = ps.Mode(r.str())
	c.Workers = int(r.i64())
	c.Backup = int(r.i64())
	c.Staleness = int(r.i64())
	sp.AllowNonFinite = r.bool()
	sp.MinPartitionBytes = r.i64()
	sp.MaxPartitionBytes = r.i64()
	if n := int(r.u32()); r.need(8 * n) {
		if n > 0 {
			req.Parts = make([]int, n)
		}
		for i := range req.Parts {
			req.Parts[i] = int(r.i64())
		}
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("rdma: decode create: %w", err)
	}
	return req, nil
}

func pullSize(req *ps.PullRequest) int {
	n := strSize(req.ClientID) + 8 + 8 + 4
	for _, p := range req.Parts {
		n += strSize(p.Key.Var) + 8 + 8 + rowsSize(p.Rows)
	}
	return n
}

func encodePull(b []byte, req *ps.PullRequest) int {
	w := writer{b: b}
	w.str(req.ClientID)
	w.i64(int64(req.Worker))
	w.i64(req.Clock)
	w.u32(uint32(len(req.Parts)))
	for _, p := range req.Parts {
		w.str(p.Key.Var)
		w.i64(int64(p.Key.Index))
		w.i64(p.MinVersion)
		w.rows(p.Rows)
	}
	return w.n
}

func decodePull(b []byte) (*ps.PullRequest, error) {
	r := reader{b: b}
	req := &ps.PullRequest{ClientID: r.str(), Worker: int(r.i64()), Clock: r.i64()}
	n := int(r.u32())
	if n > len(b)/24 {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: pull of %d parts overruns the body", n)
	}
	req.Parts = make([]ps.PullPart, n)
	for i := range req.Parts {
		p := &req.Parts[i]
		p.Key.Var = r.str()
		p.Key.Index = int(r.i64())
		p.MinVersion = r.i64()
		p.Rows = r.rows()
	}
	return req, r.done()
}

func pushSize(req *ps.PushRequest) int {
	n := strSize(req.ClientID) + 8 + 8 + 8 + 4
	for _, p := range req.Parts {
		n += strSize(p.Key.Var) + 8 + 8 + rowsSize(p.Rows) + 8 + 4*len(p.Grad)
	}
	return n
}

func encodePush(b []byte, req *ps.PushRequest) int {
	n, _ := encodePushGap(b, req, -1)
	return n
}

// encodePushGap is encodePush leaving part skip's gradient out (skip < 0:
// none) and saying where it belongs.
func encodePushGap(b []byte, req *ps.PushRequest, skip int) (int, gap) {
	var g gap
	w := writer{b: b}
	w.str(req.ClientID)
	w.u64(req.Seq)
	w.i64(int64(req.Worker))
	w.i64(req.Clock)
	w.u32(uint32(len(req.Parts)))
	for i, p := range req.Parts {
		w.str(p.Key.Var)
		w.i64(int64(p.Key.Index))
		w.i64(p.Step)
		w.rows(p.Rows)
		if i == skip && p.Grad != nil {
			g = gap{off: w.floatsGap(p.Grad), data: f32bytes(p.Grad)}
		} else {
			w.floats(p.Grad)
		}
	}
	return w.n, g
}

func decodePush(b []byte) (*ps.PushRequest, error) { return decodePushAlias(b, false) }

// decodePushAlias is decodePush whose gradients, with alias, are views of
// b rather than copies: valid only while b is.
func decodePushAlias(b []byte, alias bool) (*ps.PushRequest, error) {
	r := reader{b: b, alias: alias}
	req := &ps.PushRequest{ClientID: r.str(), Seq: r.u64(), Worker: int(r.i64()), Clock: r.i64()}
	n := int(r.u32())
	if n > len(b)/36 {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: push of %d parts overruns the body", n)
	}
	req.Parts = make([]ps.PushPart, n)
	for i := range req.Parts {
		p := &req.Parts[i]
		p.Key.Var = r.str()
		p.Key.Index = int(r.i64())
		p.Step = r.i64()
		p.Rows = r.rows()
		p.Grad = r.floats()
	}
	return req, r.done()
}

// Response bodies.

func versionsSize(v []int64) int { return 4 + 8*len(v) }

func encodeVersions(b []byte, v []int64) int {
	w := writer{b: b}
	w.u32(uint32(len(v)))
	for _, x := range v {
		w.i64(x)
	}
	return w.n
}

func decodeVersions(b []byte) ([]int64, error) {
	r := reader{b: b}
	n := int(r.u32())
	if n > len(b)/8 {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: %d versions overrun the body", n)
	}
	v := make([]int64, n)
	for i := range v {
		v[i] = r.i64()
	}
	return v, r.done()
}

// A pull response body is a table, then the values:
//
//	u32 parts
//	per part: str var, i64 index, i64 version, u64 count (nilCount: nil),
//	          u64 offset of its values in the body (0 when it has none)
//	values, each part's at its offset, 4-aligned, after the table
//
// The table's size follows from the request alone, so a server can hand
// the service (PullRequest.Alloc) the space after it and have the values
// written into the frame once, in any order; the body ends where the last
// values end.

// tableHead is the start of a pull response's table: the part count and
// the time the server held the pull (PullResponse.Waited).
const tableHead = 4 + 8

// tableEntrySize is one part's entry: its key, version, count and offset.
func tableEntrySize(key ps.PartKey) int { return strSize(key.Var) + 4*8 }

// pullTableSize is the size of the table answering req.
func pullTableSize(req *ps.PullRequest) int {
	n := tableHead
	for _, p := range req.Parts {
		n += tableEntrySize(p.Key)
	}
	return n
}

func respTableSize(resp *ps.PullResponse) int {
	n := tableHead
	for _, p := range resp.Parts {
		n += tableEntrySize(p.Key)
	}
	return n
}

// dataAlign aligns each part's values in the body; with the 40-byte header
// (headerSize) before the body, this puts them on 64-byte boundaries of
// the page-aligned frame, which copies prefer.
const dataAlign = 64

// alignData rounds a body offset up so that headerSize+off is a multiple
// of dataAlign.
func alignData(off int) int {
	return (off+headerSize+dataAlign-1)&^(dataAlign-1) - headerSize
}

// pullRespSize is the body size of resp laid out by encodePullResp.
func pullRespSize(resp *ps.PullResponse) int {
	n := respTableSize(resp)
	for _, p := range resp.Parts {
		if len(p.Values) > 0 {
			n = alignData(n) + 4*len(p.Values)
		}
	}
	return n
}

// respPart is where one part's values are in a pull response body.
type respPart struct {
	off   int  // body offset of the values
	count int  // values
	isNil bool // Values is nil
}

// putPullTable writes the table of resp with the given value locations and
// returns its size.
func putPullTable(b []byte, resp *ps.PullResponse, loc []respPart) int {
	w := writer{b: b}
	w.u32(uint32(len(resp.Parts)))
	w.i64(int64(resp.Waited))
	for i, p := range resp.Parts {
		w.str(p.Key.Var)
		w.i64(int64(p.Key.Index))
		w.i64(p.Version)
		if loc[i].isNil {
			w.u64(nilCount)
		} else {
			w.u64(uint64(loc[i].count))
		}
		w.u64(uint64(loc[i].off))
	}
	return w.n
}

// encodePullResp lays resp out with every part's values copied after the
// table, in order, and returns the body size.
func encodePullResp(b []byte, resp *ps.PullResponse) int {
	n, _ := encodePullRespGap(b, resp, -1)
	return n
}

// encodePullRespGap is encodePullResp leaving part skip's values out (they
// go last; the caller sends them from Go memory).
func encodePullRespGap(b []byte, resp *ps.PullResponse, skip int) (int, gap) {
	loc := make([]respPart, len(resp.Parts))
	end := respTableSize(resp)
	var g gap
	place := func(i int) {
		v := resp.Parts[i].Values
		loc[i] = respPart{count: len(v), isNil: v == nil}
		if len(v) == 0 {
			return
		}
		loc[i].off = alignData(end)
		end = loc[i].off + 4*len(v)
		if i == skip {
			g = gap{off: loc[i].off, data: f32bytes(v)}
		} else {
			copy(b[loc[i].off:end], f32bytes(v))
		}
	}
	for i := range resp.Parts {
		if i != skip {
			place(i)
		}
	}
	if skip >= 0 && skip < len(resp.Parts) {
		place(skip)
	}
	putPullTable(b, resp, loc)
	// Zero the alignment padding, so a frame never carries stale bytes.
	zeroGaps(b[:end], respTableSize(resp), loc)
	return end, g
}

// zeroGaps clears the bytes of body b after the table that no part's
// values occupy.
func zeroGaps(b []byte, table int, loc []respPart) {
	at := table
	for _, l := range sortedLocs(loc) {
		if l.count == 0 {
			continue
		}
		if l.off > at {
			clear(b[at:l.off])
		}
		at = max(at, l.off+4*l.count)
	}
	if at < len(b) {
		clear(b[at:])
	}
}

func sortedLocs(loc []respPart) []respPart {
	out := make([]respPart, 0, len(loc))
	for _, l := range loc {
		if l.count > 0 {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b respPart) int { return a.off - b.off })
	return out
}

func decodePullResp(b []byte) (*ps.PullResponse, error) { return decodePullRespInto(b, nil) }

// decodePullRespInto decodes a pull response, copying each part's values
// into the matching part's Dst of req when its length fits (the part's
// Values is then Dst itself), else into a new slice. Values keep nil and
// empty apart.
func decodePullRespInto(b []byte, req *ps.PullRequest) (*ps.PullResponse, error) {
	r := reader{b: b}
	n := int(r.u32())
	waited := r.i64()
	if n > len(b)/36 {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: %d parts overrun the body", n)
	}
	resp := &ps.PullResponse{Parts: make([]ps.PartValues, n), Waited: time.Duration(max(0, waited))}
	loc := make([]respPart, n)
	for i := range resp.Parts {
		p := &resp.Parts[i]
		p.Key.Var = r.str()
		p.Key.Index = int(r.i64())
		p.Version = r.i64()
		count, off := r.u64(), r.u64()
		if r.err != nil {
			return nil, r.err
		}
		switch {
		case count == nilCount:
			loc[i].isNil = true
		case count > uint64(len(b))/4:
			return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: part %d: %d values overrun the body", i, count)
		default:
			loc[i].count = int(count)
		}
		if loc[i].count == 0 {
			if off != 0 {
				return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: part %d: offset %d without values", i, off)
			}
			continue
		}
		if off > uint64(len(b)) {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: part %d: offset %d overruns the body", i, off)
		}
		loc[i].off = int(off)
	}
	table := r.n
	end := table
	for i, l := range loc {
		if l.count == 0 {
			continue
		}
		if l.off < table || l.off%4 != 0 || l.off+4*l.count > len(b) {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: part %d: %d values at offset %d outside the %d-byte body after a %d-byte table", i, l.count, l.off, len(b), table)
		}
		end = max(end, l.off+4*l.count)
	}
	if end != len(b) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: %d trailing bytes in body", len(b)-end)
	}
	for i, l := range loc {
		p := &resp.Parts[i]
		switch {
		case l.isNil:
			continue
		case l.count == 0:
			p.Values = []float32{}
			continue
		}
		src := b[l.off : l.off+4*l.count]
		var dst []float32
		if req != nil && i < len(req.Parts) && len(req.Parts[i].Dst) == l.count {
			dst = req.Parts[i].Dst
		} else if uintptr(unsafe.Pointer(&src[0]))%4 == 0 {
			// Appending to nil allocates without zeroing what it copies.
			p.Values = append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(&src[0])), l.count)...)
			continue
		} else {
			dst = make([]float32, l.count)
		}
		copy(f32bytes(dst), src)
		p.Values = dst
	}
	return resp, nil
}

const maxErrMsg = 1024

func errSize(code ps.Code, msg string) int {
	return strSize(string(code)) + strSize(msg[:min(len(msg), maxErrMsg)])
}

func encodeErr(b []byte, code ps.Code, msg string) int {
	if len(msg) > maxErrMsg {
		msg = msg[:maxErrMsg]
	}
	w := writer{b: b}
	w.str(string(code))
	w.str(msg)
	return w.n
}

func decodeErr(b []byte) error {
	r := reader{b: b}
	code := ps.Code(r.str())
	msg := r.str()
	if err := r.done(); err != nil {
		return err
	}
	if code == ps.CodeOK {
		code = ps.CodeInternal
	}
	if err := ps.ErrorFromCode(code, msg); err != nil {
		return err
	}
	return fmt.Errorf("rdma: remote error: %s", msg)
}

// Control messages: [magic u32][kind u8][pad 3][fields...], at most ctrlSize.

// hello is a client's first message: who it is and where its area lives.
type hello struct {
	nonce     uint64
	areaBytes uint64
	areaBase  uint64
	areaKey   uint64
	name      []byte
	// pid and fd, when fd > 0, name a memfd holding the client's area that
	// the server may map as its mirror (shm; see sharedarea_linux.go).
	// Optional on the wire: a hello without them is a private area.
	pid, fd uint32
}

// welcome answers a hello: the client's index and the server's mirror area.
type welcome struct {
	nonce     uint64
	client    uint32
	areaBytes uint64
	areaBase  uint64
	areaKey   uint64
	code      ps.Code
	msg       string
	// shared says the server mapped the client's area as its mirror: frames
	// are written in place and writes carry only the notice. Optional on
	// the wire (absent: false).
	shared bool
}

func ctrlHeader(b []byte, kind uint8) writer {
	w := writer{b: b}
	w.u32(magic)
	w.u32(uint32(kind))
	return w
}

func encodeHello(b []byte, h hello) int {
	w := ctrlHeader(b, ctrlHello)
	w.u64(h.nonce)
	w.u64(h.areaBytes)
	w.u64(h.areaBase)
	w.u64(h.areaKey)
	w.u32(uint32(len(h.name)))
	w.n += copy(w.b[w.n:], h.name)
	w.u32(h.pid)
	w.u32(h.fd)
	return w.n
}

func encodeWelcome(b []byte, m welcome) int {
	w := ctrlHeader(b, ctrlWelcome)
	w.u64(m.nonce)
	w.u32(m.client)
	w.u64(m.areaBytes)
	w.u64(m.areaBase)
	w.u64(m.areaKey)
	if len(m.msg) > 256 {
		m.msg = m.msg[:256]
	}
	w.str(string(m.code))
	w.str(m.msg)
	w.bool(m.shared)
	return w.n
}

// encodeSmall encodes ping, pong, bye and cancel: a client index and two
// words (nonce; or page and seq for cancel).
func encodeSmall(b []byte, kind uint8, client uint32, a, c uint64) int {
	w := ctrlHeader(b, kind)
	w.u32(client)
	w.u64(a)
	w.u64(c)
	return w.n
}

// ctrlMsg is any decoded control message.
type ctrlMsg struct {
	kind    uint8
	hello   hello
	welcome welcome
	client  uint32
	a, c    uint64
}

func decodeCtrl(b []byte) (ctrlMsg, error) {
	var m ctrlMsg
	r := reader{b: b}
	if r.u32() != magic {
		return m, ps.Errorf(ps.ErrInvalidArgument, "rdma: control message without magic")
	}
	kind := r.u32()
	if kind > math.MaxUint8 {
		return m, ps.Errorf(ps.ErrInvalidArgument, "rdma: control kind %d", kind)
	}
	m.kind = uint8(kind)
	switch m.kind {
	case ctrlHello:
		m.hello.nonce = r.u64()
		m.hello.areaBytes = r.u64()
		m.hello.areaBase = r.u64()
		m.hello.areaKey = r.u64()
		n := int(r.u32())
		if n > maxNameLen || !r.need(n) {
			return m, ps.Errorf(ps.ErrInvalidArgument, "rdma: hello with a bad name length %d", n)
		}
		m.hello.name = append([]byte(nil), r.b[r.n:r.n+n]...)
		r.n += n
		if len(r.b)-r.n >= 8 {
			m.hello.pid = r.u32()
			m.hello.fd = r.u32()
		}
	case ctrlWelcome:
		m.welcome.nonce = r.u64()
		m.welcome.client = r.u32()
		m.welcome.areaBytes = r.u64()
		m.welcome.areaBase = r.u64()
		m.welcome.areaKey = r.u64()
		m.welcome.code = ps.Code(r.str())
		m.welcome.msg = r.str()
		if r.err == nil && len(r.b)-r.n >= 4 {
			m.welcome.shared = r.bool()
		}
	case ctrlPing, ctrlPong, ctrlBye, ctrlCancel, ctrlByeAck:
		m.client = r.u32()
		m.a = r.u64()
		m.c = r.u64()
	default:
		return m, ps.Errorf(ps.ErrInvalidArgument, "rdma: unknown control kind %d", kind)
	}
	return m, r.err
}
