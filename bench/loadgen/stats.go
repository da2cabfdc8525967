package loadgen

import (
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// wallNS is CLOCK_REALTIME in nanoseconds since the Unix epoch: the clock
// of the kernel's software receive timestamps (SO_TIMESTAMPNS), so a send
// time taken here and a receive time stamped by the kernel compare directly.
func wallNS() int64 { return time.Now().UnixNano() }

// latUnit is the resolution of a recorded latency.
const latUnit = 10 * time.Nanosecond

const (
	slotIdentity = 1 << 31
	slotLatMask  = slotIdentity - 1
)

// ledger is the record of one run (one rate step): one uint32 slot per call
// sequence number in [base, base+len(slots)), written by the sink (latency
// and Identity flag) and counters written by both sides. Memory is 4 bytes
// per call the run may send, fixed when the run starts.
type ledger struct {
	run   uint32
	base  uint64
	slots []uint32
	// tx[i] is, for the call in slots[i], 1 + how many latUnits after the
	// user-space send time (the Call-ID's) the kernel stamped the INVITE's
	// transmission; 0 when no transmit stamp was read.
	tx   []uint32
	next atomic.Uint64 // next free offset into slots

	sent, received, withIdentity, duplicates atomic.Uint64
	answered, failed, provisional, byeOK     atomic.Uint64
	// kernelStamped counts arrivals timed by the kernel's receive
	// timestamp (the rest fell back to the sink's read time); negative
	// counts arrivals stamped before their send time (clock stepped, or a
	// broken timestamp), recorded as 0.
	kernelStamped, negative atomic.Uint64
	// txStamped counts INVITEs with a kernel transmit timestamp.
	txStamped atomic.Uint64
}

func newLedger(run uint32, base uint64, n int) *ledger {
	return &ledger{run: run, base: base, slots: make([]uint32, n), tx: make([]uint32, n)}
}

// sentStamp records that the kernel stamped seq's transmission deltaNS
// after the send time in its Call-ID. Stamps before that time or more than
// a second after it are not plausible and are ignored.
func (l *ledger) sentStamp(seq uint64, deltaNS int64) {
	if seq < l.base || seq-l.base >= uint64(len(l.tx)) || deltaNS < 0 || deltaNS > int64(time.Second) {
		return
	}
	atomic.StoreUint32(&l.tx[seq-l.base], uint32(deltaNS/int64(latUnit))+1)
	l.txStamped.Add(1)
}

// take reserves up to want sequence numbers; it returns the first and how
// many (0 when the ledger is full).
func (l *ledger) take(want int) (uint64, int) {
	for {
		cur := l.next.Load()
		left := uint64(len(l.slots)) - cur
		if left == 0 {
			return 0, 0
		}
		n := uint64(want)
		if n > left {
			n = left
		}
		if l.next.CompareAndSwap(cur, cur+n) {
			return l.base + cur, int(n)
		}
	}
}

// arrive records the first arrival of seq at the sink; kernel says the
// arrival time is the kernel's receive timestamp.
func (l *ledger) arrive(seq uint64, latNS int64, identity, kernel bool) {
	if seq < l.base || seq-l.base >= uint64(len(l.slots)) {
		return
	}
	u := latNS/int64(latUnit) + 1
	if latNS < 0 {
		u = 1
	}
	if u > slotLatMask {
		u = slotLatMask
	}
	v := uint32(u)
	if identity {
		v |= slotIdentity
	}
	if !atomic.CompareAndSwapUint32(&l.slots[seq-l.base], 0, v) {
		l.duplicates.Add(1)
		return
	}
	l.received.Add(1)
	if identity {
		l.withIdentity.Add(1)
	}
	if kernel {
		l.kernelStamped.Add(1)
	}
	if latNS < 0 {
		l.negative.Add(1)
	}
}

func (l *ledger) owns(seq uint64, run uint32) bool {
	return run == l.run && seq >= l.base && seq-l.base < uint64(len(l.slots))
}

// histogram is a log-linear histogram (HDR style): exact below 128 units,
// then 64 buckets per power of two (relative error under 1.6 %).
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	max    uint64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histHalf    = histSub / 2
	histBuckets = (64-histSubBits)*histHalf + histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits
	return e*histHalf + int(v>>uint(e))
}

// histUpper is the largest value that falls in bucket i.
func histUpper(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histHalf - 1
	m := uint64(i - e*histHalf)
	return (m+1)<<uint(e) - 1
}

func (h *histogram) record(v uint64) {
	h.counts[histIndex(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var c uint64
	for i, n := range h.counts {
		c += n
		if c >= rank {
			if u := histUpper(i); u < h.max {
				return u
			}
			return h.max
		}
	}
	return h.max
}

// Latency summarises one-way latency in microseconds: the kernel's receive
// timestamp of the INVITE at the sink's socket minus the generator's send
// time, taken just before the sendmmsg(2) that carried it, both on
// CLOCK_REALTIME. The sink's own scheduling is not in it.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p99_9_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

func (h *histogram) latency() Latency {
	us := func(units uint64) float64 { return float64(units) * float64(latUnit) / float64(time.Microsecond) }
	if h.n == 0 {
		return Latency{}
	}
	return Latency{
		P50:  us(h.quantile(0.50)),
		P90:  us(h.quantile(0.90)),
		P99:  us(h.quantile(0.99)),
		P999: us(h.quantile(0.999)),
		Max:  us(h.max),
		Mean: h.sum / float64(h.n) * float64(latUnit) / float64(time.Microsecond),
	}
}

// Result is the outcome of one run at one rate.
type Result struct {
	TargetRate   float64 `json:"target_rate"` // calls/s; 0 means open loop
	AchievedRate float64 `json:"achieved_rate"`
	SendSeconds  float64 `json:"send_s"`
	Sent         uint64  `json:"sent"`
	Received     uint64  `json:"received"` // unique INVITEs at the sink
	Lost         uint64  `json:"lost"`
	LossPct      float64 `json:"loss_pct"`
	// LossBasis is "sink" when the in-process sink counted arrivals, or
	// "answers" when only final responses at the generator were counted.
	LossBasis    string  `json:"loss_basis"`
	WithIdentity uint64  `json:"with_identity"`
	Duplicates   uint64  `json:"duplicates"`
	Answered     uint64  `json:"answered"` // 2xx to INVITE at the generator
	Failed       uint64  `json:"failed"`   // >= 300 to INVITE
	Provisional  uint64  `json:"provisional"`
	ByeOK        uint64  `json:"bye_ok"` // 2xx to BYE (full-call mode)
	VerifyOK     uint64  `json:"verify_ok"`
	VerifyFailed uint64  `json:"verify_failed"`
	Latency      Latency `json:"latency"`
	// RxKernelStamped is how many of the Received INVITEs were timed by the
	// kernel's receive timestamp (the rest by the sink's read time, which
	// includes its scheduling delay); LatencyNegative how many arrived
	// stamped before their send time and were recorded as 0.
	RxKernelStamped uint64 `json:"rx_kernel_stamped"`
	LatencyNegative uint64 `json:"latency_negative"`
	// TxKernelStamped is how many of the Sent INVITEs have a kernel transmit
	// timestamp; for those, latency runs from it instead of from the
	// user-space time before their sendmmsg.
	TxKernelStamped uint64 `json:"tx_kernel_stamped"`
}

// String is the one-line human summary.
func (r Result) String() string {
	rate := "open-loop"
	if r.TargetRate > 0 {
		rate = fmt.Sprintf("%.0f/s", r.TargetRate)
	}
	s := fmt.Sprintf("rate %s achieved %.0f/s sent %d recv %d lost %d (%.3f%%, %s) identity %d answered %d",
		rate, r.AchievedRate, r.Sent, r.Received, r.Lost, r.LossPct, r.LossBasis, r.WithIdentity, r.Answered)
	if r.ByeOK > 0 {
		s += fmt.Sprintf(" bye-ok %d", r.ByeOK)
	}
	if r.VerifyOK+r.VerifyFailed > 0 {
		s += fmt.Sprintf(" verified %d/%d", r.VerifyOK, r.VerifyOK+r.VerifyFailed)
	}
	if r.LossBasis == "sink" {
		l := r.Latency
		s += fmt.Sprintf(" latency p50 %.1fus p90 %.1fus p99 %.1fus p99.9 %.1fus max %.1fus", l.P50, l.P90, l.P99, l.P999, l.Max)
		if r.RxKernelStamped != r.Received {
			s += fmt.Sprintf(" (receive-stamped %d of %d)", r.RxKernelStamped, r.Received)
		}
		if r.TxKernelStamped != 0 && r.TxKernelStamped != r.Sent {
			s += fmt.Sprintf(" (transmit-stamped %d of %d)", r.TxKernelStamped, r.Sent)
		}
		if r.LatencyNegative > 0 {
			s += fmt.Sprintf(" negative %d", r.LatencyNegative)
		}
	}
	return s
}

// result turns a ledger into a Result. Slots past sent are ignored.
func (l *ledger) result(target float64, send time.Duration, withSink bool) Result {
	r := Result{
		TargetRate:   target,
		SendSeconds:  send.Seconds(),
		Sent:         l.sent.Load(),
		Received:     l.received.Load(),
		WithIdentity: l.withIdentity.Load(),
		Duplicates:   l.duplicates.Load(),
		Answered:     l.answered.Load(),
		Failed:       l.failed.Load(),
		Provisional:  l.provisional.Load(),
		ByeOK:        l.byeOK.Load(),
	}
	if send > 0 {
		r.AchievedRate = float64(r.Sent) / send.Seconds()
	}
	got := r.Answered + r.Failed
	r.LossBasis = "answers"
	if withSink {
		got = r.Received
		r.LossBasis = "sink"
		r.RxKernelStamped = l.kernelStamped.Load()
		r.LatencyNegative = l.negative.Load()
		r.TxKernelStamped = l.txStamped.Load()
		var h histogram
		n := l.next.Load()
		for i := uint64(0); i < n; i++ {
			if v := atomic.LoadUint32(&l.slots[i]); v != 0 {
				lat := uint64(v&slotLatMask) - 1
				if t := uint64(atomic.LoadUint32(&l.tx[i])); t != 0 {
					lat -= min(lat, t-1) // from the transmit stamp; rounding may cross 0
				}
				h.record(lat)
			}
		}
		r.Latency = h.latency()
	}
	if got < r.Sent {
		r.Lost = r.Sent - got
	}
	if r.Sent > 0 {
		r.LossPct = 100 * float64(r.Lost) / float64(r.Sent)
	}
	return r
}
