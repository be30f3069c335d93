package main

import (
	"fmt"
	"runtime"
	"slices"
	"time"
)

// tensorSet is a named group of real tensors (one per model variable).
type tensorSet struct {
	Name     string
	Names    []string
	Tensors  [][]float32
	RowSizes []int
}

func (s tensorSet) rawBytes() int {
	n := 0
	for _, t := range s.Tensors {
		n += 4 * len(t)
	}
	return n
}

// codecRow is one codec measured on one tensor set.
type codecRow struct {
	Set       string  `json:"tensors"`
	Codec     string  `json:"codec"`
	RawBytes  int     `json:"raw_bytes"`
	WireBytes int     `json:"wire_bytes"`
	Ratio     float64 `json:"wire_over_raw"`
	// EncodeMsPerMB and DecodeMsPerMB are CPU milliseconds (this thread)
	// per MB (1e6 bytes) of raw float32, medians over reps.
	EncodeMsPerMB float64 `json:"encode_cpu_ms_per_mb"`
	DecodeMsPerMB float64 `json:"decode_cpu_ms_per_mb"`
	// RelError is ‖decoded − raw‖/‖raw‖ over the whole set, one pass from
	// a fresh codec (top-k: the first step, with an empty residual).
	RelError float64 `json:"rel_error"`
	// BreakEvenGBps is the link speed below which the codec saves time on
	// one serial transfer: saved bytes / (encode + decode CPU seconds).
	BreakEvenGBps float64 `json:"break_even_gb_per_s"`
	Reps          int     `json:"reps"`
}

// measureCodec measures one codec on one set: wire size and error from a
// fresh codec, then CPU time of encode and of decode, each repeated for at
// least minTime, reps times; the medians are reported.
func measureCodec(set tensorSet, name string, reps int, minTime time.Duration) (codecRow, error) {
	row := codecRow{Set: set.Name, Codec: name, RawBytes: set.rawBytes(), Reps: reps}
	codecs := make([]codec, len(set.Tensors))
	bufs := make([][]byte, len(set.Tensors))
	dense := make([][]float32, len(set.Tensors))
	var num, den float64
	for i, t := range set.Tensors {
		c, err := newCodec(name, set.RowSizes[i])
		if err != nil {
			return row, err
		}
		codecs[i] = c
		b, err := c.encode(nil, t)
		if err != nil {
			return row, fmt.Errorf("%s encode %s: %w", name, set.Names[i], err)
		}
		bufs[i] = b
		row.WireBytes += len(b)
		dense[i] = make([]float32, len(t))
		if err := c.decode(dense[i], b); err != nil {
			return row, fmt.Errorf("%s decode %s: %w", name, set.Names[i], err)
		}
		if !c.lossy() && !slices.Equal(dense[i], t) {
			return row, fmt.Errorf("%s: lossless codec changed %s", name, set.Names[i])
		}
		e := relError(dense[i], t)
		n2 := 0.0
		for _, v := range t {
			n2 += float64(v) * float64(v)
		}
		num += e * e * n2
		den += n2
	}
	if den > 0 {
		row.RelError = sqrt(num / den)
	}
	row.Ratio = float64(row.WireBytes) / float64(row.RawBytes)
	mb := float64(row.RawBytes) / 1e6
	var encs, decs []float64
	for range reps {
		enc, err := cpuPerPass(minTime, func() error {
			for i, t := range set.Tensors {
				var err error
				if bufs[i], err = codecs[i].encode(bufs[i][:0], t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return row, fmt.Errorf("%s encode: %w", name, err)
		}
		dec, err := cpuPerPass(minTime, func() error {
			for i := range set.Tensors {
				if err := codecs[i].decode(dense[i], bufs[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return row, fmt.Errorf("%s decode: %w", name, err)
		}
		encs = append(encs, enc.Seconds()*1e3/mb)
		decs = append(decs, dec.Seconds()*1e3/mb)
	}
	row.EncodeMsPerMB, row.DecodeMsPerMB = median(encs), median(decs)
	if cpu := (row.EncodeMsPerMB + row.DecodeMsPerMB) / 1e3 * mb; cpu > 0 && row.WireBytes < row.RawBytes {
		row.BreakEvenGBps = float64(row.RawBytes-row.WireBytes) / cpu / 1e9
	}
	return row, nil
}

// cpuPerPass runs pass until minTime of thread CPU time has passed (at
// least 3 passes) and returns the CPU time per pass. The goroutine is
// locked to its thread so the thread's CPU clock measures only it.
func cpuPerPass(minTime time.Duration, pass func() error) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, err := threadCPU()
	if err != nil {
		return 0, err
	}
	n := 0
	var used time.Duration
	for n < 3 || used < minTime {
		if err := pass(); err != nil {
			return 0, err
		}
		n++
		now, err := threadCPU()
		if err != nil {
			return 0, err
		}
		used = now - start
	}
	return used / time.Duration(n), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
