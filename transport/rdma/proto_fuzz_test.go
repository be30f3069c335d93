package rdma

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"testing"
	"unsafe"

	"github.com/flowps/flowps/ps"
)

// The decoders below read bytes a peer wrote into registered memory or a
// control message. These fuzz targets check that any input yields a value
// or an error — never a panic or an allocation beyond the input's size —
// and that what the encoders write decodes to the same request.

func FuzzReadFrame(f *testing.F) {
	buf := make([]byte, frameLen(24))
	putFrame(buf, frameHeader{seq: 7, kind: framePull, body: 24, room: 100, timeout: 5})
	f.Add(buf, len(buf))
	f.Add(buf[:headerSize], headerSize)
	f.Add(bytes.Repeat([]byte{0xff}, 64), 64)
	f.Fuzz(func(t *testing.T, b []byte, limit int) {
		h, err := readFrame(b, limit)
		if err != nil {
			return
		}
		if h.body < 0 || frameLen(h.body) > len(b) || h.room < 0 || h.room > len(b) {
			t.Fatalf("accepted frame %+v outside its %d bytes", h, len(b))
		}
	})
}

func FuzzDecodeBodies(f *testing.F) {
	pull := &ps.PullRequest{ClientID: "c", Worker: 1, Clock: 2, Parts: []ps.PullPart{
		{Key: ps.PartKey{Var: "w", Index: 3}, MinVersion: 4, Rows: []int64{0, 5}},
		{Key: ps.PartKey{Var: "b"}},
	}}
	push := &ps.PushRequest{ClientID: "c", Seq: 9, Worker: 1, Clock: 2, Parts: []ps.PushPart{
		{Key: ps.PartKey{Var: "w", Index: 3}, Step: 4, Rows: []int64{1}, Grad: []float32{1, 2}},
		{Key: ps.PartKey{Var: "b"}, Grad: []float32{-1}},
	}}
	resp := &ps.PullResponse{Parts: []ps.PartValues{{Key: ps.PartKey{Var: "w", Index: 1}, Version: 3, Values: []float32{1, 2, 3}},
		{Key: ps.PartKey{Var: "nil"}}, {Key: ps.PartKey{Var: "empty"}, Values: []float32{}}, {Key: ps.PartKey{Var: "b", Index: 2}, Version: 1, Values: []float32{-1}}}}
	pb := make([]byte, pullSize(pull))
	encodePull(pb, pull)
	qb := make([]byte, pushSize(push))
	encodePush(qb, push)
	rb := make([]byte, pullRespSize(resp))
	encodePullResp(rb, resp)
	vb := make([]byte, versionsSize([]int64{1, 2}))
	encodeVersions(vb, []int64{1, 2})
	eb := make([]byte, errSize(ps.CodeStale, "late"))
	encodeErr(eb, ps.CodeStale, "late")
	for _, seed := range [][]byte{pb, qb, rb, vb, eb, []byte(`{"spec":{"name":"x","shape":[2]},"parts":[0]}`), {0xff, 0xff, 0xff, 0xff}} {
		f.Add(seed)
	}
	// The seeds must round-trip, or the targets below test nothing.
	if got, err := decodePull(pb); err != nil || !reflect.DeepEqual(got, pull) {
		f.Fatalf("pull round trip: %+v, %v", got, err)
	}
	if got, err := decodePush(qb); err != nil || !reflect.DeepEqual(got, push) {
		f.Fatalf("push round trip: %+v, %v", got, err)
	}
	if got, err := decodePullResp(rb); err != nil || !reflect.DeepEqual(got, resp) {
		f.Fatalf("pull response round trip: %+v, %v", got, err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if req, err := decodePull(b); err == nil {
			// A decoded request re-encodes to the same bytes.
			out := make([]byte, pullSize(req))
			if n := encodePull(out, req); !bytes.Equal(out[:n], b) {
				t.Fatalf("pull re-encodes differently")
			}
		}
		if req, err := decodePush(b); err == nil {
			for _, p := range req.Parts {
				if len(p.Grad)*4 > len(b) || len(p.Rows)*8 > len(b) {
					t.Fatalf("push part larger than its input: %d grads, %d rows from %d bytes", len(p.Grad), len(p.Rows), len(b))
				}
			}
			out := make([]byte, pushSize(req))
			if n := encodePush(out, req); !bytes.Equal(out[:n], b) {
				t.Fatalf("push re-encodes differently")
			}
		}
		if resp, err := decodePullResp(b); err == nil {
			// Offsets may be laid out any way; what they decode to must
			// survive encoding again, and decoding into destinations of
			// the right sizes must fill them.
			out := make([]byte, pullRespSize(resp))
			n := encodePullResp(out, resp)
			again, err := decodePullResp(out[:n])
			if err != nil || !reflect.DeepEqual(again, resp) {
				t.Fatalf("pull response re-encodes to %+v, %v; decoded %+v", again, err, resp)
			}
			req := &ps.PullRequest{Parts: make([]ps.PullPart, len(resp.Parts))}
			for i, p := range resp.Parts {
				if len(p.Values) > 0 {
					req.Parts[i].Dst = make([]float32, len(p.Values))
				}
			}
			into, err := decodePullRespInto(b, req)
			if err != nil {
				t.Fatalf("decoding into destinations: %v", err)
			}
			for i, p := range into.Parts {
				if len(p.Values) > 0 && !ps.SameBuffer(p.Values, req.Parts[i].Dst) {
					t.Fatalf("part %d not decoded into its Dst", i)
				}
				if !reflect.DeepEqual(f32bits(p.Values), f32bits(resp.Parts[i].Values)) || (p.Values == nil) != (resp.Parts[i].Values == nil) {
					t.Fatalf("part %d decoded into Dst differs", i)
				}
			}
		}
		if req, err := decodePushAlias(b, true); err == nil {
			plain, err := decodePush(b)
			if err != nil {
				t.Fatalf("push decodes as views but not as copies: %v", err)
			}
			for i, p := range req.Parts {
				if !reflect.DeepEqual(f32bits(p.Grad), f32bits(plain.Parts[i].Grad)) || (p.Grad == nil) != (plain.Parts[i].Grad == nil) {
					t.Fatalf("part %d: views and copies differ", i)
				}
				if len(p.Grad) > 0 {
					lo := uintptr(unsafe.Pointer(&b[0]))
					at := uintptr(unsafe.Pointer(&p.Grad[0]))
					if at%4 == 0 && (at < lo || at+uintptr(4*len(p.Grad)) > lo+uintptr(len(b))) {
						t.Fatalf("part %d's gradient view lies outside the body", i)
					}
				}
			}
		}
		if v, err := decodeVersions(b); err == nil && 4+8*len(v) != len(b) {
			t.Fatalf("%d versions from %d bytes", len(v), len(b))
		}
		if err := decodeErr(b); err == nil {
			t.Fatal("decodeErr returned nil")
		}
		decodeCreate(b)
	})
}

func FuzzDecodeCtrl(f *testing.F) {
	b := make([]byte, ctrlSize)
	f.Add(append([]byte(nil), b[:encodeHello(b, hello{nonce: 1, areaBytes: 1 << 20, name: []byte("ep")})]...))
	f.Add(append([]byte(nil), b[:encodeWelcome(b, welcome{nonce: 1, client: 2, code: ps.CodeUnavailable, msg: "full"})]...))
	f.Add(append([]byte(nil), b[:encodeSmall(b, ctrlCancel, 3, 4, 5)]...))
	f.Add(append([]byte(nil), b[:encodeHello(b, hello{nonce: 3, areaBytes: 1 << 20, name: []byte("shm-ep"), pid: 42, fd: 7})]...))
	f.Add(append([]byte(nil), b[:encodeWelcome(b, welcome{nonce: 3, client: 1, areaBytes: 1 << 20, shared: true})]...))
	// The seeds round-trip, shared-area fields included.
	if m, err := decodeCtrl(b[:encodeHello(b, hello{nonce: 3, areaBytes: 1 << 20, name: []byte("shm-ep"), pid: 42, fd: 7})]); err != nil || m.hello.pid != 42 || m.hello.fd != 7 {
		f.Fatalf("hello round trip: %+v, %v", m.hello, err)
	}
	if m, err := decodeCtrl(b[:encodeWelcome(b, welcome{nonce: 3, client: 1, shared: true})]); err != nil || !m.welcome.shared {
		f.Fatalf("welcome round trip: %+v, %v", m.welcome, err)
	}
	bad := make([]byte, 40)
	binary.LittleEndian.PutUint32(bad, magic)
	binary.LittleEndian.PutUint32(bad[4:], uint32(ctrlHello))
	binary.LittleEndian.PutUint32(bad[36:], 1<<31)
	f.Add(bad)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeCtrl(b)
		if err == nil && len(m.hello.name) > maxNameLen {
			t.Fatalf("hello name of %d bytes accepted", len(m.hello.name))
		}
		if err == nil && m.kind == ctrlHello {
			// What decodes re-encodes to a hello that decodes the same.
			out := make([]byte, ctrlSize)
			again, err := decodeCtrl(out[:encodeHello(out, m.hello)])
			if err != nil || !reflect.DeepEqual(again.hello, m.hello) {
				t.Fatalf("hello %+v re-decodes as %+v, %v", m.hello, again.hello, err)
			}
		}
	})
}

// f32bits compares float slices bit for bit (NaN payloads included).
func f32bits(f []float32) []uint32 {
	out := make([]uint32, len(f))
	for i, x := range f {
		out[i] = math.Float32bits(x)
	}
	return out
}
