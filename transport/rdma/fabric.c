//go:build rdma && cgo && linux

#define _GNU_SOURCE // ppoll
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_eq.h>
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "fabric.h"

// A doorbell is a Unix datagram socket in the abstract namespace, named
// after the endpoint (see bell_name). shm has no wait object that another
// process can signal, so whoever posts an operation to a peer rings the
// peer's doorbell and an idle progress thread blocks in ppoll on its own.
struct fps_bell {
	struct sockaddr_un sa;
	socklen_t len;
};

struct fps_ep {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	struct fi_context2 *ctxs;
	size_t nctx;
	int cq_wait;
	int bell_fd;          // this endpoint's doorbell, or -1
	struct fps_bell self; // its address, to wake our own progress thread
};

// bell_name fills b with the doorbell address of the endpoint called name:
// "\0flowps-bell-" and the FNV-1a hash of the name, so both sides derive
// it from what they already exchange.
static void bell_name(const void *name, size_t len, struct fps_bell *b) {
	const unsigned char *p = name;
	uint64_t h = 1469598103934665603ULL;
	size_t i;
	int n;
	for (i = 0; i < len; i++) { h ^= p[i]; h *= 1099511628211ULL; }
	memset(b, 0, sizeof(*b));
	b->sa.sun_family = AF_UNIX;
	n = snprintf(b->sa.sun_path + 1, sizeof(b->sa.sun_path) - 1, "flowps-bell-%016llx", (unsigned long long)h);
	b->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

fps_bell *fps_bell_new(const void *name, size_t len) {
	fps_bell *b = malloc(sizeof(*b));
	if (b) bell_name(name, len, b);
	return b;
}

void fps_bell_free(fps_bell *b) { free(b); }

int fps_ring(fps_ep *ep, fps_bell *b) {
	char c = 1;
	if (!b || ep->bell_fd < 0) return 0;
	// A full queue already holds a wake-up; a missing peer is noticed by
	// the liveness checks, not here.
	if (sendto(ep->bell_fd, &c, 1, MSG_DONTWAIT, (struct sockaddr *)&b->sa, b->len) < 0)
		return -errno;
	return 0;
}

// open_bell binds the endpoint's doorbell (shm only).
static int open_bell(fps_ep *ep) {
	char name[256];
	size_t len = sizeof(name);
	int ret = fi_getname(&ep->ep->fid, name, &len);
	if (ret) return ret;
	bell_name(name, len, &ep->self);
	ep->bell_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ep->bell_fd < 0) return -errno;
	if (bind(ep->bell_fd, (struct sockaddr *)&ep->self.sa, ep->self.len) < 0) {
		ret = -errno;
		close(ep->bell_fd);
		ep->bell_fd = -1;
		return ret;
	}
	return 0;
}

static void *ctxptr(fps_ep *ep, int64_t ctx) {
	if (ctx < 0 || (size_t)ctx >= ep->nctx) return NULL;
	return &ep->ctxs[ctx];
}

static int64_t ctxidx(fps_ep *ep, void *p) {
	char *b = (char *)ep->ctxs, *c = (char *)p;
	if (p == NULL || c < b || c >= b + ep->nctx * sizeof(struct fi_context2)) return -1;
	return (int64_t)((c - b) / sizeof(struct fi_context2));
}

static void copyname(char *dst, const char *src) {
	if (!src) { dst[0] = 0; return; }
	snprintf(dst, 64, "%s", src);
}

int fps_open(const char *prov, const char *node, const char *service,
	     size_t nctx, fps_ep **out, fps_info *oinfo, char *where, size_t wherelen) {
	struct fi_info *hints = fi_allocinfo();
	fps_ep *ep = calloc(1, sizeof(*ep));
	int ret;
	uint64_t flags = 0;
	struct fi_cq_attr cq_attr;
	struct fi_av_attr av_attr;

	if (!hints || !ep) { snprintf(where, wherelen, "fi_allocinfo"); ret = -FI_ENOMEM; goto fail; }
	ep->bell_fd = -1;
	ep->nctx = nctx;
	ep->ctxs = calloc(nctx ? nctx : 1, sizeof(struct fi_context2));
	if (!ep->ctxs) { snprintf(where, wherelen, "calloc contexts"); ret = -FI_ENOMEM; goto fail; }

	hints->caps = FI_MSG | FI_RMA | FI_SEND | FI_RECV | FI_READ | FI_WRITE |
		      FI_REMOTE_READ | FI_REMOTE_WRITE;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->ep_attr->type = FI_EP_RDM;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				      FI_MR_PROV_KEY | FI_MR_ENDPOINT;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->fabric_attr->prov_name = strdup(prov);
	if (node && node[0]) flags |= FI_SOURCE;
	else node = NULL;
	if (service && !service[0]) service = NULL;

	ret = fi_getinfo(FI_VERSION(1, 17), node, service, flags, hints, &ep->info);
	if (ret) { snprintf(where, wherelen, "fi_getinfo(provider %s)", prov); goto fail; }
	ret = fi_fabric(ep->info->fabric_attr, &ep->fabric, NULL);
	if (ret) { snprintf(where, wherelen, "fi_fabric"); goto fail; }
	ret = fi_domain(ep->fabric, ep->info, &ep->domain, NULL);
	if (ret) { snprintf(where, wherelen, "fi_domain"); goto fail; }

	memset(&cq_attr, 0, sizeof(cq_attr));
	cq_attr.format = FI_CQ_FORMAT_DATA;
	cq_attr.size = 0;
	// Block in the provider only on a file descriptor that the provider's
	// own progress signals (tcp sockets, verbs channels). shm has no such
	// wakeup across processes: its waits spin in sched_yield, so it is
	// polled from Go instead.
	cq_attr.wait_obj = strcmp(prov, "shm") == 0 ? FI_WAIT_NONE : FI_WAIT_FD;
	ret = fi_cq_open(ep->domain, &cq_attr, &ep->cq, NULL);
	if (ret == 0) {
		ep->cq_wait = cq_attr.wait_obj == FI_WAIT_FD;
	} else {
		cq_attr.wait_obj = FI_WAIT_NONE;
		ret = fi_cq_open(ep->domain, &cq_attr, &ep->cq, NULL);
		if (ret) { snprintf(where, wherelen, "fi_cq_open"); goto fail; }
	}

	memset(&av_attr, 0, sizeof(av_attr));
	av_attr.type = FI_AV_TABLE;
	ret = fi_av_open(ep->domain, &av_attr, &ep->av, NULL);
	if (ret) {
		av_attr.type = FI_AV_UNSPEC;
		ret = fi_av_open(ep->domain, &av_attr, &ep->av, NULL);
		if (ret) { snprintf(where, wherelen, "fi_av_open"); goto fail; }
	}

	ret = fi_endpoint(ep->domain, ep->info, &ep->ep, NULL);
	if (ret) { snprintf(where, wherelen, "fi_endpoint"); goto fail; }
	ret = fi_ep_bind(ep->ep, &ep->av->fid, 0);
	if (ret) { snprintf(where, wherelen, "fi_ep_bind(av)"); goto fail; }
	ret = fi_ep_bind(ep->ep, &ep->cq->fid, FI_TRANSMIT | FI_RECV);
	if (ret) { snprintf(where, wherelen, "fi_ep_bind(cq)"); goto fail; }
	ret = fi_enable(ep->ep);
	if (ret) { snprintf(where, wherelen, "fi_enable"); goto fail; }
	if (!ep->cq_wait) {
		ret = open_bell(ep);
		if (ret) { snprintf(where, wherelen, "doorbell socket"); goto fail; }
	}

	memset(oinfo, 0, sizeof(*oinfo));
	oinfo->mr_mode = ep->info->domain_attr->mr_mode;
	oinfo->caps = ep->info->caps;
	oinfo->mode = ep->info->mode;
	oinfo->cq_data_size = ep->info->domain_attr->cq_data_size;
	oinfo->max_msg_size = ep->info->ep_attr->max_msg_size;
	oinfo->inject_size = ep->info->tx_attr->inject_size;
	oinfo->iov_limit = ep->info->tx_attr->iov_limit;
	oinfo->cq_wait = ep->cq_wait;
	oinfo->bell = ep->bell_fd >= 0;
	copyname(oinfo->prov_name, ep->info->fabric_attr->prov_name);
	copyname(oinfo->fabric_name, ep->info->fabric_attr->name);
	copyname(oinfo->domain_name, ep->info->domain_attr->name);
	fi_freeinfo(hints);
	*out = ep;
	return 0;
fail:
	if (hints) fi_freeinfo(hints);
	if (ep) { fps_shutdown(ep); fps_close(ep); }
	return ret;
}

void fps_shutdown(fps_ep *ep) {
	if (ep->ep) { fi_close(&ep->ep->fid); ep->ep = NULL; }
}

void fps_close(fps_ep *ep) {
	if (ep->ep) fi_close(&ep->ep->fid);
	if (ep->cq) fi_close(&ep->cq->fid);
	if (ep->av) fi_close(&ep->av->fid);
	if (ep->domain) fi_close(&ep->domain->fid);
	if (ep->fabric) fi_close(&ep->fabric->fid);
	if (ep->info) fi_freeinfo(ep->info);
	if (ep->bell_fd >= 0) close(ep->bell_fd);
	free(ep->ctxs);
	free(ep);
}

int fps_getname(fps_ep *ep, void *buf, size_t *len) {
	return fi_getname(&ep->ep->fid, buf, len);
}

int fps_av_insert(fps_ep *ep, const void *addr, uint64_t *fi_addr) {
	fi_addr_t a = FI_ADDR_NOTAVAIL;
	int ret = fi_av_insert(ep->av, addr, 1, &a, 0, NULL);
	*fi_addr = a;
	return ret;
}

int fps_av_remove(fps_ep *ep, uint64_t fi_addr) {
	fi_addr_t a = fi_addr;
	return fi_av_remove(ep->av, &a, 1, 0);
}

int fps_mr_reg(fps_ep *ep, void *buf, size_t len, uint64_t access,
	       uint64_t requested_key, void **mrp, uint64_t *key, void **desc) {
	struct fid_mr *mr = NULL;
	int ret = fi_mr_reg(ep->domain, buf, len, access, 0, requested_key, 0, &mr, NULL);
	if (ret) return ret;
	if (ep->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
		ret = fi_mr_bind(mr, &ep->ep->fid, 0);
		if (!ret) ret = fi_mr_enable(mr);
		if (ret) { fi_close(&mr->fid); return ret; }
	}
	*mrp = mr;
	*key = fi_mr_key(mr);
	*desc = fi_mr_desc(mr);
	return 0;
}

int fps_mr_close(void *mr) {
	return fi_close(&((struct fid_mr *)mr)->fid);
}

int fps_send(fps_ep *ep, void *buf, size_t len, void *desc, uint64_t dest, int64_t ctx, fps_bell *bell) {
	int ret = (int)fi_send(ep->ep, buf, len, desc, dest, ctxptr(ep, ctx));
	if (ret == 0) fps_ring(ep, bell);
	return ret;
}

int fps_recv(fps_ep *ep, void *buf, size_t len, void *desc, int64_t ctx) {
	return (int)fi_recv(ep->ep, buf, len, desc, FI_ADDR_UNSPEC, ctxptr(ep, ctx));
}

int fps_writedata(fps_ep *ep, void *buf, size_t len, void *desc, uint64_t imm,
		  uint64_t dest, uint64_t raddr, uint64_t rkey, int64_t ctx, fps_bell *bell) {
	int ret;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct fi_rma_iov rma = { .addr = raddr, .len = len, .key = rkey };
	struct fi_msg_rma msg = {
		.msg_iov = &iov, .desc = &desc, .iov_count = 1, .addr = dest,
		.rma_iov = &rma, .rma_iov_count = 1, .context = ctxptr(ep, ctx), .data = imm,
	};
	// Delivery complete: the completion reports what happened at the
	// target, so a rejected key or a vanished peer fails the operation
	// instead of completing it silently.
	ret = (int)fi_writemsg(ep->ep, &msg, FI_REMOTE_CQ_DATA | FI_COMPLETION | FI_DELIVERY_COMPLETE);
	if (ret == 0) fps_ring(ep, bell);
	return ret;
}

int fps_writedata3(fps_ep *ep, void *b0, size_t l0, void *b1, size_t l1, void *b2, size_t l2,
		   void *desc, uint64_t imm, uint64_t dest, uint64_t raddr, uint64_t rkey, int64_t ctx, fps_bell *bell) {
	int ret;
	struct iovec iov[3] = {
		{ .iov_base = b0, .iov_len = l0 },
		{ .iov_base = b1, .iov_len = l1 },
		{ .iov_base = b2, .iov_len = l2 },
	};
	void *descs[3] = { desc, NULL, desc };
	struct fi_rma_iov rma = { .addr = raddr, .len = l0 + l1 + l2, .key = rkey };
	struct fi_msg_rma msg = {
		.msg_iov = iov, .desc = descs, .iov_count = 3, .addr = dest,
		.rma_iov = &rma, .rma_iov_count = 1, .context = ctxptr(ep, ctx), .data = imm,
	};
	ret = (int)fi_writemsg(ep->ep, &msg, FI_REMOTE_CQ_DATA | FI_COMPLETION | FI_DELIVERY_COMPLETE);
	if (ret == 0) fps_ring(ep, bell);
	return ret;
}

int fps_read(fps_ep *ep, void *buf, size_t len, void *desc,
	     uint64_t src, uint64_t raddr, uint64_t rkey, int64_t ctx) {
	return (int)fi_read(ep->ep, buf, len, desc, src, raddr, rkey, ctxptr(ep, ctx));
}

// convert turns n entries (or an error) of fi_cq_read into fps_comps.
static int convert(fps_ep *ep, ssize_t n, struct fi_cq_data_entry *e, fps_comp *out) {
	int i;
	if (n == -FI_EAGAIN || n == -FI_ETIMEDOUT || n == -FI_EINTR) return 0;
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry err;
		memset(&err, 0, sizeof(err));
		n = fi_cq_readerr(ep->cq, &err, 0);
		if (n == -FI_EAGAIN) return 0;
		if (n < 0) return (int)n;
		memset(&out[0], 0, sizeof(out[0]));
		out[0].ctx = ctxidx(ep, err.op_context);
		out[0].flags = err.flags;
		out[0].len = err.len;
		out[0].data = err.data;
		out[0].err = err.err ? err.err : FI_EOTHER;
		out[0].prov_errno = err.prov_errno;
		return 1;
	}
	if (n < 0) return (int)n;
	for (i = 0; i < n; i++) {
		out[i].ctx = (e[i].flags & FI_REMOTE_CQ_DATA) && !(e[i].flags & FI_RECV)
				     ? -1 : ctxidx(ep, e[i].op_context);
		out[i].flags = e[i].flags;
		out[i].len = e[i].len;
		out[i].data = e[i].data;
		out[i].err = 0;
		out[i].prov_errno = 0;
	}
	return (int)n;
}

int fps_poll(fps_ep *ep, fps_comp *out, int max) {
	struct fi_cq_data_entry e[16];
	if (max > 16) max = 16;
	return convert(ep, fi_cq_read(ep->cq, e, max), e, out);
}

static void drain_bell(fps_ep *ep) {
	char buf[64];
	while (recv(ep->bell_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
	}
}

int fps_wait(fps_ep *ep, fps_comp *out, int max, int64_t timeout_ns) {
	struct fi_cq_data_entry e[16];
	ssize_t n;
	if (max > 16) max = 16;
	if (ep->cq_wait) {
		int ms = (int)((timeout_ns + 999999) / 1000000);
		n = fi_cq_sread(ep->cq, e, max, NULL, ms > 0 ? ms : 1);
		return convert(ep, n, e, out);
	}
	n = fi_cq_read(ep->cq, e, max);
	if (n != -FI_EAGAIN) return convert(ep, n, e, out);
	if (ep->bell_fd >= 0) {
		struct pollfd pfd = { .fd = ep->bell_fd, .events = POLLIN };
		struct timespec ts = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
		if (ppoll(&pfd, 1, &ts, NULL) > 0) drain_bell(ep);
	} else {
		struct timespec ts = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
		nanosleep(&ts, NULL);
	}
	return convert(ep, fi_cq_read(ep->cq, e, max), e, out);
}

int fps_signal(fps_ep *ep) {
	if (ep->cq_wait) return fi_cq_signal(ep->cq);
	return fps_ring(ep, &ep->self);
}

const char *fps_strerror(int err) {
	if (err < 0) err = -err;
	return fi_strerror(err);
}

uint32_t fps_version(void) {
	return fi_version();
}

int fps_providers(char *buf, size_t len) {
	struct fi_info *info = NULL, *cur;
	size_t used = 0;
	int ret = fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, NULL, &info);
	if (ret) return ret;
	buf[0] = 0;
	for (cur = info; cur; cur = cur->next) {
		const char *p = cur->fabric_attr->prov_name;
		const char *t = cur->ep_attr->type == FI_EP_RDM ? "rdm" : cur->ep_attr->type == FI_EP_MSG ? "msg" : "dgram";
		int n = snprintf(buf + used, len - used, "%s/%s\n", p ? p : "?", t);
		if (n < 0 || (size_t)n >= len - used) break;
		used += n;
	}
	fi_freeinfo(info);
	return 0;
}
