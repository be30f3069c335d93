# flowps image: psd and trainer, static, on scratch.
#
# Build with scripts/docker-build.sh, which compiles the binaries on the host
# (CGO_ENABLED=0: no OpenBLAS, no RDMA/libfabric in this image; gRPC only)
# and stages them with the MNIST IDX files in deploy/.build. No base image is
# pulled: the image is FROM scratch, so it has no shell; choose the binary
# with the entrypoint (compose: `entrypoint: ["/trainer"]`; psd is default).
FROM scratch

COPY deploy/.build/psd deploy/.build/trainer /
COPY deploy/.build/mnist/ /mnist/
# psd's --data-dir default location, writable by the unprivileged user.
COPY --chown=65532:65532 deploy/.build/data/ /data/

ENV FLOWPS_MNIST_DIR=/mnist
# No /etc/passwd is needed: numeric ids. 65532 is the usual "nonroot".
USER 65532:65532
# gRPC 7000, gossip 7946 (TCP and UDP), HTTP 8000 (/healthz, /status, /metrics).
EXPOSE 7000 7946/tcp 7946/udp 8000
ENTRYPOINT ["/psd"]
CMD ["--listen", "0.0.0.0:7000", "--gossip", "0.0.0.0:7946", "--http", "0.0.0.0:8000", "--data-dir", "/data"]
