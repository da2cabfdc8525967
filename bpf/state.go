package bpf

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Attached reports, per interface of Config.Ifaces, whether the XDP link is
// still attached. A link stops being attached when its interface is deleted
// or when someone detaches it (bpftool link detach); INVITEs on that
// interface then pass unsigned through the kernel. After Close it returns
// nil.
func (s *Steering) Attached() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	out := make(map[string]bool, len(s.ifaces))
	for _, a := range s.ifaces {
		ok := false
		if a.link != nil {
			if info, err := a.link.Info(); err == nil {
				if x := info.XDP(); x != nil && x.Ifindex != 0 {
					ok = true
				}
			}
		}
		out[a.name] = ok
	}
	return out
}

// HeartbeatAge is how old the heartbeat the XDP program reads is, and
// whether steering is enabled (SetEnabled). INVITEs are forwarded unsigned
// (fail-open) while steering is disabled or the age exceeds StaleAfter.
func (s *Steering) HeartbeatAge() (age, staleAfter time.Duration, enabled bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, false, ErrClosed
	}
	var key uint32
	var hb uint64
	if err := s.objs.Heartbeat.Lookup(&key, &hb); err != nil {
		return 0, 0, false, fmt.Errorf("bpf: heartbeat: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, 0, false, fmt.Errorf("bpf: clock: %w", err)
	}
	return time.Duration(max(ts.Nano()-int64(hb), 0)), time.Duration(s.cfg.StaleNs), s.cfg.Enabled != 0, nil
}
