#!/bin/sh
# Regenerates the committed XDP objects; run by `go generate ./bpf/` (gen.go)
# and `make bpf-generate`. The kernel headers' asm/ directory is in the
# build machine's multiarch include directory, which clang names
# (x86_64-linux-gnu, aarch64-linux-gnu, ...); the objects are bpfel and do
# not depend on the build machine's architecture.
set -eu
inc="/usr/include/$(clang -print-multiarch)"
[ -f "$inc/asm/types.h" ] || { echo "bpf/gen.sh: no $inc/asm/types.h (apt-get install linux-libc-dev)" >&2; exit 1; }
flags="-O2 -g -Wall -Werror -I$inc"
go tool bpf2go -cc clang -cflags "$flags" -target bpfel -type config -type iface -type meta -type reason steer steer.c
# Test-only programs: the _test suffix keeps them out of the package.
go tool bpf2go -cc clang -cflags "$flags" -target bpfel -output-suffix _test sink sink.c
go tool bpf2go -cc clang -cflags "$flags" -target bpfel -output-suffix _test trafficgen trafficgen.c
