//go:build unix

package rdma

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// memlockLimit returns RLIMIT_MEMLOCK's soft limit in bytes — what
// `ulimit -l` shows, in KiB there — and whether it is unlimited.
func memlockLimit() (uint64, bool, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r); err != nil {
		return 0, false, err
	}
	return r.Cur, r.Cur == unix.RLIM_INFINITY, nil
}

// memlockHint explains a failed registration: hardware providers pin the
// memory they register, bounded by the memlock limit.
func memlockHint() string {
	lim, unlimited, err := memlockLimit()
	if err != nil {
		return "memlock limit unknown: " + err.Error()
	}
	if unlimited {
		return "memlock limit is unlimited"
	}
	return fmt.Sprintf("memlock limit is %d KiB (ulimit -l); pinned registrations need more: raise it in /etc/security/limits.conf or the service's LimitMEMLOCK", lim>>10)
}
