// Package freeport finds ports on 127.0.0.1 that are free for both TCP and
// UDP, as a psd's gossip address needs, for tests and benchmarks that start
// processes.
package freeport

import (
	"errors"
	"net"
	"strconv"
)

// Get returns a port on 127.0.0.1 that is free for TCP and UDP right now.
// Another process may take it before the caller binds it; callers start
// processes that fail clearly on a port in use.
func Get() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no port on 127.0.0.1 free for both TCP and UDP")
}
