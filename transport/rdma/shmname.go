package rdma

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

var shmSeq atomic.Uint64

// uniqueSHMName names a shm endpoint uniquely across processes and time:
// role, pid, a per-process counter and the start time. shm creates a
// /dev/shm region under this name and removes it when the endpoint closes.
func uniqueSHMName(role string) string {
	return fmt.Sprintf("flowps-%s-%d-%d-%x", role, os.Getpid(), shmSeq.Add(1), time.Now().UnixNano()&0xffffffff)
}
