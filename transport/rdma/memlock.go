package rdma

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// memlockLimit returns RLIMIT_MEMLOCK's soft limit in bytes (or
// unix.RLIM_INFINITY) — what `ulimit -l` shows, in KiB there.
func memlockLimit() (uint64, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r); err != nil {
		return 0, err
	}
	return r.Cur, nil
}

// memlockHint explains a failed registration: hardware providers pin the
// memory they register, bounded by the memlock limit.
func memlockHint() string {
	lim, err := memlockLimit()
	if err != nil {
		return "memlock limit unknown: " + err.Error()
	}
	if lim == unix.RLIM_INFINITY {
		return "memlock limit is unlimited"
	}
	return fmt.Sprintf("memlock limit is %d KiB (ulimit -l); pinned registrations need more: raise it in /etc/security/limits.conf or the service's LimitMEMLOCK", lim>>10)
}
