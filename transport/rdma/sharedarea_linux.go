//go:build rdma && cgo && linux

package rdma

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Shared staging areas (shm only). shm moves every write larger than a few
// KiB with one process_vm_readv, which here runs at 3-4 GB/s against
// 8-19 GB/s for a memmove. Client and server on one host can instead share
// the memory: the client maps its area from a memfd and names it in its
// hello (pid and fd); the server opens it through /proc/<pid>/fd/<fd>
// (the same permission CMA needs) and maps it as that client's mirror.
// A frame is then written in place, back word first, front word last, and
// the fabric write that notifies the peer carries only the front word
// (the peer's view of which already holds it). The version words keep
// their meaning: a reader that finds them unequal has a frame overwritten
// while it read.

// memfdName names the memfd of the handshake with nonce: the server maps
// only a memfd of that name, so a hello cannot make it map any other file
// the client's process (or the server's own) has open.
func memfdName(nonce uint64) string { return fmt.Sprintf("flowps-area-%016x", nonce) }

// newSharedArea maps size bytes of a new memfd named for nonce and
// returns the mapping and the descriptor (to be closed once the server
// has mapped it, or the handshake is over).
func newSharedArea(size int, nonce uint64) ([]byte, int, error) {
	fd, err := unix.MemfdCreate(memfdName(nonce), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, -1, fmt.Errorf("rdma: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, -1, fmt.Errorf("rdma: sizing the shared area: %w", err)
	}
	// Sealed against shrinking: the server checks it, since pages cut off
	// under its mapping would fault (SIGBUS) when it writes a response.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return nil, -1, fmt.Errorf("rdma: sealing the shared area: %w", err)
	}
	buf, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, -1, fmt.Errorf("rdma: mapping the shared area: %w", err)
	}
	return buf, fd, nil
}

// openSharedArea maps size bytes of the client's memfd named by its hello,
// once it is sure that memory stays: a memfd of this handshake's name,
// sealed against shrinking, at least size bytes long.
func openSharedArea(pid, fd uint32, size int, nonce uint64) ([]byte, error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Check what was opened, not what the path named a moment before.
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(target, "/memfd:"+memfdName(nonce)+" ") && target != "/memfd:"+memfdName(nonce) {
		return nil, fmt.Errorf("rdma: the client's area is %q, not its memfd", target)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("rdma: the client's area: %w", err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return nil, fmt.Errorf("rdma: the client's area may shrink under the mapping (seals %#x)", seals)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() < int64(size) {
		return nil, fmt.Errorf("rdma: the client's area holds %d bytes, want %d", st.Size(), size)
	}
	return unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}
