#!/bin/sh
# Prints the build tags whose C libraries are installed on this machine:
# openblas (libopenblas-dev) and rdma (libfabric-dev). Used by the Makefile.
tags=""
have() { ldconfig -p 2>/dev/null | grep -q "$1" && [ -e "/usr/include/$2" ]; }
if have libopenblas.so "x86_64-linux-gnu/cblas.h" || have libopenblas.so "cblas.h" || have libopenblas.so "openblas/cblas.h"; then
  tags="$tags openblas"
fi
if have libfabric.so "rdma/fabric.h"; then
  tags="$tags rdma"
fi
echo $tags
