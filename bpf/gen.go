package bpf

// Generated objects are committed. Regenerate with `make bpf-generate`
// (or `go generate ./bpf/`); `make bpf-check` fails when they are stale.
// Built and checked with Debian clang 14.0.6 (see Makefile.inc); gen.sh
// holds the bpf2go commands and finds the architecture's include
// directory, so any architecture regenerates the same bytes.

//go:generate sh gen.sh
