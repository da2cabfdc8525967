package ansible

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sink is the next hop: it counts the INVITEs the appliances forward.
type sink struct {
	conn     *net.UDPConn
	signed   atomic.Int64
	unsigned atomic.Int64
	mu       sync.Mutex
	seen     map[string]bool
}

func newSink(t *testing.T) *sink {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{conn: c, seen: map[string]bool{}}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 8192)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := buf[:n]
			if !bytes.HasPrefix(msg, []byte("INVITE ")) {
				continue
			}
			id := header(msg, "Call-ID")
			s.mu.Lock()
			dup := s.seen[id]
			s.seen[id] = true
			s.mu.Unlock()
			if dup {
				continue
			}
			if bytes.Contains(msg, []byte("\r\nIdentity: ")) && bytes.Contains(msg, []byte("ppt=shaken")) {
				s.signed.Add(1)
			} else {
				s.unsigned.Add(1)
			}
		}
	}()
	return s
}

func (s *sink) port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

func header(msg []byte, name string) string {
	for _, line := range strings.Split(string(msg), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// traffic plays the SBC: INVITEs round-robin over the hosts that are not
// drained, at trafficHz, until stop is closed or trafficMax were sent.
type traffic struct {
	sent    atomic.Int64
	perHost []atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

func startTraffic(t *testing.T, l *lab, tag string) *traffic {
	tr := &traffic{perHost: make([]atomic.Int64, len(l.hosts)), stop: make(chan struct{}), done: make(chan struct{})}
	conns := make([]*net.UDPConn, len(l.hosts))
	for i, h := range l.hosts {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(h.addr), Port: sipPort})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	go func() {
		defer close(tr.done)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		tick := time.NewTicker(time.Second / trafficHz)
		defer tick.Stop()
		next := 0
		for n := 0; n < trafficMax; n++ {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			// Pick the next host that is in service.
			i := -1
			for k := 0; k < len(l.hosts); k++ {
				j := (next + k) % len(l.hosts)
				if _, err := os.Stat(filepath.Join(l.dir, "drain", l.hosts[j].name)); errors.Is(err, os.ErrNotExist) {
					i = j
					break
				}
			}
			next++
			if i < 0 {
				continue
			}
			h := l.hosts[i]
			msg := invite(h, fmt.Sprintf("%s-%d", tag, n))
			if _, err := conns[i].Write(msg); err == nil {
				tr.sent.Add(1)
				tr.perHost[i].Add(1)
			}
		}
	}()
	return tr
}

func (tr *traffic) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
}

func invite(h *host, id string) []byte {
	return []byte("INVITE sip:+12025550143@" + h.addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + h.peer + ":5099;branch=z9hG4bK-" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:+12025550142@" + h.peer + ";user=phone>;tag=" + id + "\r\n" +
		"To: <tel:+12025550143>\r\n" +
		"Call-ID: " + id + "@ansible-test\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"P-Asserted-Identity: <tel:+12025550142>\r\n" +
		"Contact: <sip:caller@" + h.peer + ":5099>\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// waitSunk waits until the sink has seen want INVITEs (or 5 s pass).
func (s *sink) waitSunk(want int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s.signed.Load()+s.unsigned.Load() >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s.signed.Load() + s.unsigned.Load()
}

// sampler records the signed-call counters once a second.
type sampler struct {
	mu    sync.Mutex
	lines []string
	stop  chan struct{}
	done  chan struct{}
}

func startSampler(l *lab, s *sink, tr *traffic) *sampler {
	sm := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(sm.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for n := 0; n < 600; n++ {
			var b strings.Builder
			fmt.Fprintf(&b, "t=%5.1fs", time.Since(start).Seconds())
			for _, h := range l.hosts {
				drained := ""
				if _, err := os.Stat(filepath.Join(l.dir, "drain", h.name)); err == nil {
					drained = "(drained)"
				}
				fmt.Fprintf(&b, "  %s signed=%d%s", h.name, h.signed(), drained)
			}
			fmt.Fprintf(&b, "  sent=%d sink_signed=%d sink_unsigned=%d", tr.sent.Load(), s.signed.Load(), s.unsigned.Load())
			sm.mu.Lock()
			sm.lines = append(sm.lines, b.String())
			sm.mu.Unlock()
			select {
			case <-sm.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return sm
}

func (sm *sampler) halt() []string {
	close(sm.stop)
	<-sm.done
	return sm.lines
}

// signingAPIUp reports whether the host signs through POST /stir/v1/signing.
func signingAPIUp(h *host) bool {
	body := fmt.Sprintf(`{"signingRequest":{"attest":"A","dest":{"tn":["12025550143"]},"iat":%d,"orig":{"tn":"12025550142"},"origid":"8f5a2a1e-6c2b-4c5e-9d2f-1b4d3c2a1f00"}}`, time.Now().Unix())
	req, err := http.NewRequest("POST", fmt.Sprintf("http://%s:%d/stir/v1/signing", h.addr, apiPort), strings.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode == 200 && bytes.Contains(b, []byte("ppt=shaken"))
}
