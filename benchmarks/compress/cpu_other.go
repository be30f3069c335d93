//go:build !linux

package main

import (
	"math"
	"time"
)

var epoch = time.Now()

// threadCPU falls back to wall time where a per-thread CPU clock is not
// available.
func threadCPU() (time.Duration, error) { return time.Since(epoch), nil }

func sqrt(x float64) float64 { return math.Sqrt(x) }
