package bpf

// Generated objects are committed. Regenerate with `make bpf-generate`
// (or `go generate ./bpf/`); `make bpf-check` fails when they are stale.
// Built and checked with Debian clang 14.0.6 (see Makefile.inc).

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type config -type iface -type meta -type reason steer steer.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel sink sink.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -output-suffix _test trafficgen trafficgen.c
