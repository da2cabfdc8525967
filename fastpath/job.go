package fastpath

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/bpf"
	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/sip"
)

// job carries one INVITE from its loop to a signer and back to the loop's
// sender. Its buffers are allocated once, when the loop starts, and reused.
type job struct {
	l        *loop
	start    time.Time // when the datagram was read (monotonic), for the latency histogram
	src, dst netip.AddrPort
	in       ingress  // how the call came
	to       target   // where it goes (an answer: back to src)
	flow     bpf.Flow // inline mode: original addresses
	pkt      []byte   // copy of the datagram (gnet reuses its buffer)
	msg      sip.Message
	orig     []byte
	dest     []byte
	destv    [1][]byte
	claims   passport.Claims
	decision policy.Decision
	input    []byte            // PASSporT signing input
	hdr      []byte            // "Identity: ...\r\n" or "P-Identity-Bypass: ...\r\n"
	dateLine []byte            // "Date: <iat as IMF-fixdate>\r\n"
	date     edit              // what signing does to the Date header (ins points into dateLine)
	dateAct  claims.DateAction // claims.DateAdd or claims.DateReplace: date is applied when signed; else none
	out      []byte            // the datagram to send
	sc       *scratch
	req      hsm.Request
	cred     *credential.Credential // the key, x5u and certificate of this call (read once, in sign)
	rec      audit.Record
	reject   bool // verify-reject: answer a failed verification instead of annotating

	// The call's PASSporTs (divert.go): pp[0] is signed with req, pp[i]
	// with more[i-1]; their signing inputs are spans of input. A plain
	// call has one, a shaken PASSporT.
	npp     int
	pp      [maxPP]pport
	more    [maxPP - 1]hsm.Request
	pending atomic.Int32 // asynchronous calls with several PASSporTs: requests not yet answered, +1 until all are submitted
	ppt     string       // the types signed, for the audit line ("shaken", "shaken,rcd", "div,div")
	attest  byte         // the shaken PASSporT's attestation; 0 when the call signs none (div)
	doneFn  func(*hsm.Request)
	partFn  func(*hsm.Request)
	cis     []sip.CallInfo // terminating side: scratch for stripCallInfo
}

// maxPP is the most PASSporTs one call signs: MaxDiv div PASSporTs
// (claims.MaxDiv), or a shaken and an rcd PASSporT.
const maxPP = claims.MaxDiv

// pport is one PASSporT a job signs: its builder (type and x5u) and the
// span of its signing input in job.input.
type pport struct {
	b          *passport.Builder
	start, end int
}

// reqAt is the signing request of PASSporT i.
func (j *job) reqAt(i int) *hsm.Request {
	if i == 0 {
		return &j.req
	}
	return &j.more[i-1]
}

// firstErr is the first failed request of the call's PASSporTs, nil when
// all are signed.
func (j *job) firstErr() error {
	for i := range j.npp {
		if err := j.reqAt(i).Err; err != nil {
			return err
		}
	}
	return nil
}

// partDone is Done of each request of a call with several PASSporTs:
// the last answer completes the call.
func (j *job) partDone(*hsm.Request) {
	if j.pending.Add(-1) == 0 {
		j.done(&j.req)
	}
}

func newJob(l *loop) *job {
	j := &job{
		l:        l,
		pkt:      make([]byte, 0, 2048),
		orig:     make([]byte, 0, 16),
		dest:     make([]byte, 0, 16),
		input:    make([]byte, 0, 512),
		hdr:      make([]byte, 0, 1024),
		dateLine: make([]byte, 0, dateLineCap),
		out:      make([]byte, 0, 4096),
		sc:       newScratch(),
		cis:      make([]sip.CallInfo, 0, 8),
	}
	j.doneFn, j.partFn = j.done, j.partDone // method values made once, not per call
	j.req.Done = j.doneFn
	j.cred = l.s.cfg.Credential.Load() // sign sets each call's own
	return j
}

// dateLineCap holds "Date: " + an IMF-fixdate + CRLF.
const dateLineCap = len("Date: ") + sip.DateLen + len("\r\n")

// setDate records the call's Date decision (claims.DateRule): dateLine is the
// Date header of the iat, which a 302 carries; for claims.DateAdd it is inserted
// as a header (before Identity), for claims.DateReplace its value replaces the
// value of the INVITE's Date header. m is the parse of the datagram the
// job will stamp (offsets hold in its copy).
func (j *job) setDate(m *sip.Message, iat int64, act claims.DateAction) {
	j.dateLine = append(j.dateLine[:0], "Date: "...)
	j.dateLine = sip.AppendDate(j.dateLine, iat)
	j.dateLine = append(j.dateLine, "\r\n"...)
	j.dateAct = act
	switch act {
	case claims.DateAdd:
		j.date = edit{at: int(m.HeadersEnd), ins: j.dateLine}
	case claims.DateReplace:
		j.date = edit{at: int(m.Date.Start), del: m.Date.Len(), ins: j.dateLine[len("Date: ") : len(j.dateLine)-2]}
	}
}

// done runs on a signer goroutine when the request is answered: it stamps
// the Identity header (or P-Identity-Bypass) and queues the result for the
// loop's sender.
func (j *job) done(r *hsm.Request) {
	defer func() {
		if p := recover(); p != nil {
			// A defect must not take the process (and every call) down:
			// drop this datagram, count it, and let the caller retransmit.
			mPanics.Inc()
			if ok, n := j.l.s.limit.allow(logInternalError); ok {
				j.l.s.log.Error("fastpath: recovered from a panic while stamping a signed request; it was dropped",
					"panic", fmt.Sprint(p), "suppressed_since_last", n)
			}
			j.l.free <- j
		}
	}()
	j.complete(r)
	j.l.sendq <- j
}

// complete builds the datagram to send for an answered request in j.out.
func (j *job) complete(r *hsm.Request) {
	j.out = j.stamp(j.out[:0], j.pkt, &j.msg, r)
}

// stamp appends to dst the datagram to send for the answered request r:
// the INVITE in pkt (parsed in m) with its Identity headers (one per
// PASSporT of the call), or with P-Identity-Bypass when a request failed
// (r is the first PASSporT's; the others are j.more), as the mode's
// egress wants it.
func (j *job) stamp(dst, pkt []byte, m *sip.Message, r *hsm.Request) []byte {
	s := j.l.s
	err := r.Err
	if err == nil && j.npp > 1 {
		err = j.firstErr()
	}
	if err == nil {
		j.hdr = j.hdr[:0]
		for i := range j.npp {
			p, ri := &j.pp[i], j.reqAt(i)
			j.hdr = append(j.hdr, "Identity: "...)
			if len(ri.Identity) > 0 {
				// A remote STI-AS signed: its Identity header value (its
				// x5u, its signature) as it is.
				j.hdr = append(j.hdr, ri.Identity...)
			} else {
				j.hdr = p.b.AppendIdentity(j.hdr, j.input[p.start:p.end], &ri.Sig)
			}
			j.hdr = append(j.hdr, "\r\n"...)
			countPassport(p.b.PPT())
		}
		if al := s.cfg.Audit; al != nil {
			j.rec = audit.Record{Time: time.Now(), CallID: m.CallID.In(pkt), Orig: j.orig, Dest: j.dest,
				Attest: j.attest, Rule: j.decision.Rule, Signer: r.SignedBy, CertFingerprint: j.cred.Fingerprint, PPT: j.ppt,
				Transport: transportNames[j.in.tr]}
			if len(r.Identity) > 0 {
				j.rec.CertFingerprint = "" // a remote STI-AS's certificate, not ours (audit/doc.go)
			}
			al.Record(&j.rec) // copies; never blocks (drops and counts when its queue is full)
		}
		switch j.attest {
		case 'A':
			mSignedA.Inc()
		case 'B':
			mSignedB.Inc()
		case 'C':
			mSignedC.Inc()
		}
	} else {
		j.hdr = append(j.hdr[:0], bypassHeader(err)...)
	}
	// The Date the PASSporT's iat was taken from goes with it; a bypassed
	// call leaves as it came.
	var date *edit
	if err == nil && (j.dateAct == claims.DateAdd || j.dateAct == claims.DateReplace) {
		date = &j.date
		if j.dateAct == claims.DateAdd {
			mDateAdded.Inc()
		} else {
			mDateReplaced.Inc()
			if ok, n := s.limit.allow(logDateReplaced); ok {
				s.log.Warn("fastpath: INVITE Date outside the freshness window replaced by now and signed (stale_date: replace, a deviation from RFC 8224 section 4.1)",
					"date", string(m.Date.In(pkt)), "suppressed_since_last", n)
			}
		}
	}
	return j.l.eg.stampCall(j, dst, pkt, m, err == nil, date)
}

func (j *job) contact(pkt []byte, m *sip.Message) []byte {
	b := append(j.sc.mf[:0], "Contact: <"...)
	b = append(b, m.RequestURI.In(pkt)...)
	b = append(b, ">\r\n"...)
	j.sc.mf = b
	return b
}

// Bypass reasons: the value of P-Identity-Bypass and the reason label of
// shakenline_calls_bypassed_total.
const (
	bypassOverload = iota // our own job pool, or every signer queue, is full
	bypassTimeout         // no signer answered within the call's budget
	bypassDown            // no signer is usable (breakers open, sessions lost)
	bypassError           // a signer answered with an error
	nBypass
)

var bypassHeaders = [nBypass][]byte{
	[]byte("P-Identity-Bypass: overload\r\n"),
	[]byte("P-Identity-Bypass: timeout\r\n"),
	[]byte("P-Identity-Bypass: signer-down\r\n"),
	[]byte("P-Identity-Bypass: signer-error\r\n"),
}

var bypassCounters = [nBypass]*metrics.Counter{mBypassOverload, mBypassTimeout, mBypassDown, mBypassError}

// bypassHeader counts a bypass and returns its header line. The reasons are
// those of hsm.BypassReason.
func bypassHeader(err error) []byte {
	k := bypassError
	switch hsm.BypassReason(err) {
	case "timeout":
		k = bypassTimeout
	case "signer-down":
		k = bypassDown
	case "queue-full":
		k = bypassOverload
	}
	bypassCounters[k].Inc()
	return bypassHeaders[k]
}
