package ps

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"unsafe"
)

// stateMagic starts every encoded PartitionState; the last byte is the
// format version.
var stateMagic = [8]byte{'F', 'L', 'P', 'S', 'S', 'T', 0, 1}

// MarshalBinary encodes the state: the magic "FLPSST\x00\x01", a
// length-prefixed JSON header (spec, index, rows, version, LSN, term, Adam
// step, sync and SSP bookkeeping, dedup windows, slot names and lengths),
// then the float32 arrays as raw little-endian words: Values, each slot in
// header order, the sync sum. Tensors are never text-encoded, so a 100 MB
// partition costs one copy. Transports carry this encoding; checkpoints may
// store it.
func (st *PartitionState) MarshalBinary() ([]byte, error) {
	h := stateHeader{
		Spec: st.Spec, Index: st.Index, Rows: st.Rows, Version: st.Version,
		LSN: st.LSN, Term: st.Term, AdamStep: st.AdamStep, Dedup: st.Dedup,
		NumValues: len(st.Values), NumAcc: len(st.Machine.Acc),
		Pushed: st.Machine.Pushed, Count: st.Machine.Count, AnyDense: st.Machine.AnyDense,
		RowsSeen: st.Machine.RowsSeen, Clocks: st.Machine.Clocks,
	}
	names := make([]string, 0, len(st.Slots))
	for name := range st.Slots {
		names = append(names, name)
	}
	slices.Sort(names)
	n := len(st.Values) + len(st.Machine.Acc)
	for _, name := range names {
		h.Slots = append(h.Slots, slotHeader{Name: name, Len: len(st.Slots[name])})
		n += len(st.Slots[name])
	}
	hj, err := json.Marshal(&h)
	if err != nil {
		return nil, Errorf(ErrInvalidArgument, "encode state of %s: %v", st.Key(), err)
	}
	out := make([]byte, 0, len(stateMagic)+4+len(hj)+4*n)
	out = append(out, stateMagic[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(hj)))
	out = append(out, hj...)
	out = appendFloats(out, st.Values)
	for _, name := range names {
		out = appendFloats(out, st.Slots[name])
	}
	out = appendFloats(out, st.Machine.Acc)
	return out, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded. It checks the framing
// and lengths (ErrInvalidArgument) but not the state's consistency with its
// spec; Server.Restore does that.
func (st *PartitionState) UnmarshalBinary(b []byte) error {
	if len(b) < len(stateMagic)+4 || [8]byte(b[:8]) != stateMagic {
		return Errorf(ErrInvalidArgument, "decode partition state: bad magic")
	}
	b = b[8:]
	hl := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(hl) > uint64(len(b)) {
		return Errorf(ErrInvalidArgument, "decode partition state: header of %d bytes, %d left", hl, len(b))
	}
	var h stateHeader
	if err := json.Unmarshal(b[:hl], &h); err != nil {
		return Errorf(ErrInvalidArgument, "decode partition state header: %v", err)
	}
	b = b[hl:]
	// Sum the lengths with each bounded by the data present, so that no
	// sum of header lengths can wrap around.
	n, most := uint64(0), uint64(len(b))/4
	for _, x := range append([]int{h.NumValues, h.NumAcc}, slotLens(h.Slots)...) {
		if x < 0 {
			return Errorf(ErrInvalidArgument, "decode partition state: negative length %d", x)
		}
		if uint64(x) > most-n {
			return Errorf(ErrInvalidArgument, "decode partition state: header lengths exceed the %d data bytes", len(b))
		}
		n += uint64(x)
	}
	if 4*n != uint64(len(b)) {
		return Errorf(ErrInvalidArgument, "decode partition state: %d data bytes, header says %d", len(b), 4*n)
	}
	*st = PartitionState{
		Spec: h.Spec, Index: h.Index, Rows: h.Rows, Version: h.Version,
		LSN: h.LSN, Term: h.Term, AdamStep: h.AdamStep, Dedup: h.Dedup,
		Machine: MachineState{Pushed: h.Pushed, Count: h.Count, AnyDense: h.AnyDense,
			RowsSeen: h.RowsSeen, Clocks: h.Clocks},
	}
	st.Values, b = readFloats(b, h.NumValues)
	if len(h.Slots) > 0 {
		st.Slots = make(map[string][]float32, len(h.Slots))
	}
	for _, s := range h.Slots {
		if _, dup := st.Slots[s.Name]; dup {
			return Errorf(ErrInvalidArgument, "decode partition state: slot %q twice", s.Name)
		}
		st.Slots[s.Name], b = readFloats(b, s.Len)
	}
	if h.NumAcc > 0 {
		st.Machine.Acc, _ = readFloats(b, h.NumAcc)
	}
	return nil
}

type slotHeader struct {
	Name string `json:"name"`
	Len  int    `json:"len"`
}

type stateHeader struct {
	Spec      VariableSpec          `json:"spec"`
	Index     int                   `json:"index"`
	Rows      RowRange              `json:"rows"`
	Version   int64                 `json:"version"`
	LSN       uint64                `json:"lsn"`
	Term      Term                  `json:"term"`
	AdamStep  int64                 `json:"adam_step,omitempty"`
	Dedup     map[string]DedupState `json:"dedup,omitempty"`
	NumValues int                   `json:"num_values"`
	NumAcc    int                   `json:"num_acc,omitempty"`
	Slots     []slotHeader          `json:"slots,omitempty"`
	Pushed    []bool                `json:"pushed,omitempty"`
	Count     int                   `json:"count,omitempty"`
	AnyDense  bool                  `json:"any_dense,omitempty"`
	RowsSeen  []int64               `json:"rows_seen,omitempty"`
	Clocks    []int64               `json:"clocks,omitempty"`
}

func slotLens(s []slotHeader) []int {
	out := make([]int, len(s))
	for i, x := range s {
		out[i] = x.Len
	}
	return out
}

// hostLittleEndian is true when float32 memory is already the encoding's
// byte order, so arrays are copied with memmove.
var hostLittleEndian = func() bool {
	x := uint32(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func floatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

func appendFloats(b []byte, v []float32) []byte {
	if hostLittleEndian {
		return append(b, floatBytes(v)...)
	}
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func readFloats(b []byte, n int) ([]float32, []byte) {
	out := make([]float32, n)
	if hostLittleEndian {
		copy(floatBytes(out), b[:4*n])
		return out, b[4*n:]
	}
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, b[4*n:]
}
