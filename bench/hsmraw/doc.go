// Package hsmraw measures PKCS#11 signing through SoftHSMv2: raw C_Sign
// throughput with miekg/pkcs11 at 1, 2, 4 and 8 sessions beside the hsm.Chain
// at the same session counts in the same run, the chain's latency at 50 % and
// 90 % of its throughput, and the failover time from a primary token's
// removal to the first call signed by the next signer.
//
//	go test -run '^$' -bench . -benchtime 1s ./bench/hsmraw/
//
// Everything here is a benchmark; nothing asserts speed. Tokens are made in
// a temporary directory by hsm/softhsmtest.
package hsmraw
