// Thin C layer over libfabric for package rdma. The libfabric API is mostly
// static inline functions that call through provider tables, which cgo
// cannot call directly; these helpers wrap them in plain functions with
// integer contexts so no Go pointer is ever stored in C.
#ifndef FLOWPS_FABRIC_H
#define FLOWPS_FABRIC_H

#include <stdint.h>
#include <stddef.h>

typedef struct fps_ep fps_ep;
typedef struct fps_bell fps_bell; // a peer's doorbell address (shm)

// fps_comp is one completion as Go sees it. ctx is the index passed when
// the operation was posted, or -1 for remote events (a peer's writedata).
typedef struct {
	int64_t ctx;
	uint64_t flags;
	uint64_t len;
	uint64_t data;
	int32_t err;        // 0, or a positive FI_E* code for an error entry
	int32_t prov_errno; // provider-specific errno of an error entry
} fps_comp;

// fps_info describes an opened endpoint.
typedef struct {
	uint64_t mr_mode;
	uint64_t caps;
	uint64_t mode;
	size_t cq_data_size;
	size_t max_msg_size;
	size_t inject_size;
	size_t iov_limit;
	int cq_wait; // 1 when fps_wait blocks in the provider (fi_cq_sread)
	int bell;    // 1 when fps_wait blocks on the endpoint's doorbell
	char prov_name[64];
	char fabric_name[64];
	char domain_name[64];
} fps_info;

int fps_open(const char *prov, const char *node, const char *service,
	     size_t nctx, fps_ep **out, fps_info *info, char *where, size_t wherelen);
void fps_shutdown(fps_ep *ep); // closes the endpoint; then close MRs, then fps_close
void fps_close(fps_ep *ep);
int fps_getname(fps_ep *ep, void *buf, size_t *len);
int fps_av_insert(fps_ep *ep, const void *addr, uint64_t *fi_addr);
int fps_av_remove(fps_ep *ep, uint64_t fi_addr);
int fps_mr_reg(fps_ep *ep, void *buf, size_t len, uint64_t access,
	       uint64_t requested_key, void **mr, uint64_t *key, void **desc);
int fps_mr_close(void *mr);
// Posting functions ring bell (a peer's doorbell, may be NULL) once the
// operation is posted.
int fps_send(fps_ep *ep, void *buf, size_t len, void *desc, uint64_t dest, int64_t ctx, fps_bell *bell);
int fps_recv(fps_ep *ep, void *buf, size_t len, void *desc, int64_t ctx);
int fps_writedata(fps_ep *ep, void *buf, size_t len, void *desc, uint64_t imm,
		  uint64_t dest, uint64_t raddr, uint64_t rkey, int64_t ctx, fps_bell *bell);
// fps_writedata3 writes three local segments to one remote range; the
// middle one is unregistered memory (only without FI_MR_LOCAL).
int fps_writedata3(fps_ep *ep, void *b0, size_t l0, void *b1, size_t l1, void *b2, size_t l2,
		   void *desc, uint64_t imm, uint64_t dest, uint64_t raddr, uint64_t rkey, int64_t ctx, fps_bell *bell);
int fps_read(fps_ep *ep, void *buf, size_t len, void *desc,
	     uint64_t src, uint64_t raddr, uint64_t rkey, int64_t ctx);
// fps_poll reads up to max completions without blocking.
int fps_poll(fps_ep *ep, fps_comp *out, int max);
// fps_wait is fps_poll that first waits up to timeout_ns for work: in
// fi_cq_sread (millisecond resolution) when the CQ has a wait object, else
// on the doorbell, else by sleeping.
int fps_wait(fps_ep *ep, fps_comp *out, int max, int64_t timeout_ns);
// fps_signal wakes a thread blocked in fps_wait.
int fps_signal(fps_ep *ep);
fps_bell *fps_bell_new(const void *name, size_t len); // a peer's doorbell from its endpoint name
void fps_bell_free(fps_bell *b);
int fps_ring(fps_ep *ep, fps_bell *b);
const char *fps_strerror(int err);
uint32_t fps_version(void);
// fps_providers writes "provider/eptype\n" for every fi_getinfo entry.
int fps_providers(char *buf, size_t len);

#endif
