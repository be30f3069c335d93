//go:build rdma && cgo && linux

package rdma

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procCPU is the user+system CPU time a process has used, from
// /proc/<pid>/stat (clock ticks of 10 ms).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading the CPU time of %d: %v", pid, err)
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestIdleServerCPU checks that a server in its own process, with a
// client connected but idle, sleeps: its progress goroutine blocks (on the
// doorbell for shm, in fi_cq_sread for tcp) instead of polling. A polling
// loop costs a good part of a core; the bound is loose because the
// machine may be busy. FLOWPS_MEASURE=1 measures for 10 s and prints.
func TestIdleServerCPU(t *testing.T) {
	window := 3 * time.Second
	if os.Getenv("FLOWPS_MEASURE") == "1" {
		window = 10 * time.Second
	}
	for _, prov := range providers {
		t.Run(prov, func(t *testing.T) {
			ch := startChild(t, prov)
			c := testDial(t, ch.addr) // pings every 100 ms
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			bigVar(t, ctx, c, "w", 1024) // one call, then nothing
			time.Sleep(200 * time.Millisecond)
			pid := ch.cmd.Process.Pid
			before, start := procCPU(t, pid), time.Now()
			time.Sleep(window)
			used, took := procCPU(t, pid)-before, time.Since(start)
			share := float64(used) / float64(took)
			t.Logf("%s: idle server process used %v CPU in %v (%.2f%% of a core), client pinging every 100 ms", prov, used, took.Round(time.Millisecond), 100*share)
			if share > 0.05 {
				t.Errorf("an idle server used %.1f%% of a core; its progress loop is polling", 100*share)
			}
		})
	}
}
