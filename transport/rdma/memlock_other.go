//go:build !unix

package rdma

import "errors"

func memlockLimit() (uint64, bool, error) {
	return 0, false, errors.New("no memlock limit on this system")
}

func memlockHint() string { return "memlock limit unknown on this system" }
