// Package hsmraw measures PKCS#11 signing through SoftHSMv2: raw C_Sign
// throughput with miekg/pkcs11 at 1, 2, 4 and 8 sessions beside the hsm.Chain
// at the same session counts in the same run, the chain's latency at 50 % and
// 90 % of its throughput, and the failover time from a primary token's
// removal to the first call signed by the next signer.
//
//	go test -run '^$' -bench . -benchtime 1s ./bench/hsmraw/
//
// BenchmarkRemote measures the same through p11-kit: p11-kit-client.so in the
// benchmark, `p11-kit server` loading SoftHSM in another process (the layout
// of a network HSM); it runs with HSMRAW_P11KIT=1, HSMRAW_SERVER_CPU=N pins
// the server:
//
//	HSMRAW_P11KIT=1 HSMRAW_SERVER_CPU=1 taskset -c 0 go test -run '^$' -bench Remote ./bench/hsmraw/
//
// "raw" is miekg/pkcs11 as an application would use it: C_SignInit, then
// C_Sign twice (length, then signature). The chain signs through the
// module's function list with one C_Sign per signature, so through p11-kit
// it makes two round trips per signature where raw makes three.
//
// Everything here is a benchmark; nothing asserts speed. Tokens are made in
// a temporary directory by hsm/softhsmtest.
package hsmraw
