//go:build !linux

package grpctransport

import (
	"net"
	"time"
)

// setUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist; the
// data path's heartbeats still detect a silent server.
func setUserTimeout(net.Conn, time.Duration) {}
