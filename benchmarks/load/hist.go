package main

import (
	"math"
	"time"
)

// hist is a latency histogram with logarithmic buckets 1% wide from 1 µs
// to about 100 s: quantiles come out within 1%, in constant memory.
type hist struct {
	counts []uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

const (
	histBase    = float64(time.Microsecond)
	histGrowth  = 1.01
	histBuckets = 1900 // 1.01^1900 ≈ 1.6e8 µs
)

func newHist() *hist { return &hist{counts: make([]uint64, histBuckets)} }

func bucketOf(d time.Duration) int {
	if float64(d) <= histBase {
		return 0
	}
	b := int(math.Log(float64(d)/histBase)/math.Log(histGrowth)) + 1
	return min(b, histBuckets-1)
}

func (h *hist) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the upper edge of the bucket holding quantile q.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank && c > 0 {
			d := time.Duration(histBase * math.Pow(histGrowth, float64(i)))
			return min(d, h.max)
		}
	}
	return h.max
}
