//go:build race

package grpctransport

import "sync/atomic"

// raceClock orders, for the race detector, a data-path request or
// response with its reading. In-process tests run client and server in one
// address space, talking only through the kernel's sockets, and the race
// detector cannot see that a byte written happens before it is read: a
// test that changes a fake's behaviour between calls would be reported as
// racing with the server goroutine that reads it. gRPC's own path happens
// to order them through its shared buffer pools. Race builds only.
var raceClock atomic.Uint64

// raceOrder is called after a side's last write before it sends, and after
// it received, so that the two are ordered.
func raceOrder() { raceClock.Add(1) }
