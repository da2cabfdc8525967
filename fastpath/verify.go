package fastpath

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/sip"
)

// Verifier checks the Identity headers of an inbound INVITE (STI-VS). It is
// an interface so that the packet path does not link the x5u fetcher and
// its HTTP client; cmd/appliance adapts package verify to it. Verify runs
// on a verification worker, never on an event loop, and must be safe for
// concurrent use.
type Verifier interface {
	Verify(ctx context.Context, identities [][]byte, orig, dest []byte, now time.Time) VerifyResult
}

// VerifyResult is what the terminating side acts on.
type VerifyResult struct {
	Verstat string // TN-Validation-Passed | TN-Validation-Failed | No-TN-Validation
	Code    int    // RFC 8224 response code for a reject (428, 436, 437, 438, 403), 0 when passed
	Reason  string // RFC 9410 reason text
}

// Verification outcomes as verstat values (ATIS-1000074, 3GPP TS 24.229).
const (
	VerstatPassed = "TN-Validation-Passed"
	VerstatFailed = "TN-Validation-Failed"
	VerstatNone   = "No-TN-Validation"
)

// startVerify queues the INVITE in pkt for verification. It returns false,
// counted, when the call cannot be verified now: no trust store
// configured, no job free, the verifiers' queue full, or redirect mode (a
// 302 carries no verification result: New leaves s.verifier nil); see
// egress.forwardUnverified.
func (l *loop) startVerify(pkt []byte, src, dst netip.AddrPort, reject bool) bool {
	cfg := &l.s.cfg
	if l.s.verifier == nil {
		mVerifyUnavailable.Inc()
		return false
	}
	m := &l.msg
	j := l.getJob()
	if j == nil {
		mVerifyOverload.Inc()
		return false
	}
	queued := false
	defer func() {
		// Until the verifier has it, the job is ours: return it to the
		// free list on every way out, a panic included (process
		// recovers it), so a defect cannot drain the loop's jobs.
		if !queued {
			l.free <- j
		}
	}()
	j.start = time.Now()
	j.src, j.dst, j.flow = src, dst, l.flow
	j.in, j.to = l.in, l.to
	j.pkt = append(j.pkt[:0], pkt...)
	j.msg = *m
	j.reject = reject
	var ok bool
	if j.orig, ok = claims.OrigTN(j.orig[:0], l.raw, pkt, m, cfg.Numbers); !ok {
		j.orig = j.orig[:0]
	}
	if j.dest, ok = claims.DestTN(j.dest[:0], l.raw, pkt, m, cfg.Numbers); !ok {
		j.dest = j.dest[:0]
	}
	select {
	case l.s.verifyq <- j:
		queued = true
		l.handedOff = l.bursts
		return true
	default:
		mVerifyOverload.Inc()
		return false
	}
}

// verifyWorker verifies queued INVITEs and hands the result to the job's
// loop sender: annotated and forwarded, or answered with a reject.
func (s *Server) verifyWorker(ctx context.Context) {
	defer s.wg.Done()
	ids := make([][]byte, 0, sip.MaxIdentity)
	for {
		var j *job
		select {
		case <-ctx.Done():
			return
		case <-s.stopSenders:
			return
		case j = <-s.verifyq:
		}
		ids = ids[:0]
		for i := 0; i < int(j.msg.NumIdentity); i++ {
			ids = append(ids, j.msg.Identity[i].In(j.pkt))
		}
		// A bounded wait per call: an x5u or CRL that does not come in time
		// fails this call's verification (436 or fail-open CRL, as the
		// verifier decides) rather than holding a worker while the queue
		// behind it fills.
		vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyBudget)
		r := s.verifier.Verify(vctx, ids, j.orig, j.dest, s.cfg.Now())
		cancel()
		j.finishVerify(r)
	}
}

// finishVerify acts on the verifier's result for job j: a reject per
// policy, answered back to the caller, or the call annotated with its
// verstat and forwarded by the mode's egress.
func (j *job) finishVerify(r VerifyResult) {
	switch r.Verstat {
	case VerstatPassed:
		mVerifyPassed.Inc()
	case VerstatFailed:
		mVerifyFailed.Inc()
	default:
		mVerifyNone.Inc()
	}
	if j.reject && r.Verstat != VerstatPassed && r.Code >= 400 {
		// Reject per policy (RFC 8224 section 6.2.2) with an RFC 9410 Reason.
		j.hdr = append(j.hdr[:0], "Reason: STIR;cause="...)
		j.hdr = strconv.AppendInt(j.hdr, int64(r.Code), 10)
		j.hdr = append(j.hdr, ";text=\""...)
		j.hdr = appendQuotedSafe(j.hdr, r.Reason)
		j.hdr = append(j.hdr, "\"\r\n"...)
		j.out = appendResponse(j.out[:0], j.pkt, &j.msg, r.Code, reasonPhrase(r.Code), j.hdr)
		j.dst = j.src
		j.to = target{addr: j.src, tr: j.in.tr, conn: j.in.conn}
		// Inline: the answer goes back to the caller from the callee's
		// address, as if the callee had sent it.
		j.flow.Src, j.flow.Dst = j.flow.Dst, j.flow.Src
		mVerifyRejected.Inc()
		j.l.sendq <- j
		return
	}
	// Annotate: verstat on the identity the caller is shown (RFC 8224
	// section 6.2.3: P-Asserted-Identity or From, tel or sip user=phone).
	// Every verstat the caller wrote on the identities goes: only ours
	// counts.
	j.hdr = append(append(j.hdr[:0], ";verstat="...), r.Verstat...)
	param := len(j.hdr)
	ann, hdr := verstatAnnotation(j.hdr, j.pkt, &j.msg, j.hdr[:param])
	j.hdr = hdr
	j.l.eg.stampVerified(j, &ann)
	j.l.sendq <- j
}

var verstatNoneParam = []byte(";verstat=" + VerstatNone)

// unverified is the annotation of the INVITE in hand when the policy gives
// it to verification and it cannot be verified now (no verifier
// configured, or the verifiers' queue full): No-TN-Validation, so the next
// hop sees that the call was not verified, and no verstat the caller
// wrote survives (an overload an attacker provokes must not pass his own
// TN-Validation-Passed). The mode's egress forwards the call with it
// (forwardUnverified), under verify-reject too.
func (l *loop) unverified(pkt []byte) annotation {
	ann, buf := verstatAnnotation(l.ann[:0], pkt, &l.msg, verstatNoneParam)
	l.ann = buf
	return ann
}

// verstatAnnotation is the edit that puts param (";verstat=...") on the
// identity sip.VerstatPoint picks, and leaves no other verstat on it: each one
// the caller wrote into that URI goes, and so does each one among the
// header parameters after it (not the URI's by RFC 3261 section 20.10, but
// lenient parsers read them as the number's). An addr-spec gains angle
// brackets so that verstat is a URI parameter and the header's parameters
// stay the header's. The identity is rewritten into buf, which is returned
// grown, and the annotation replaces it (from the URI to the end of the
// header value) with that copy; so are From and the other recorded
// P-Asserted-Identity values that carry a verstat, without one. The
// annotation is empty when the call names no number.
func verstatAnnotation(buf, pkt []byte, m *sip.Message, param []byte) (annotation, []byte) {
	var ann annotation
	na, at, bracketed := sip.VerstatPoint(pkt, m)
	if at < 0 {
		return ann, buf
	}
	u := na.URI
	end := max(int(na.Value.End), int(u.End))
	start := len(buf)
	if !bracketed {
		buf = append(buf, '<')
	}
	// at is the URI's first ';' (tel), its '@' (sip) or its end, none of
	// them inside a verstat parameter.
	buf = sip.AppendWithoutVerstat(buf, pkt, int(u.Start), at, false)
	buf = append(buf, param...)
	buf = sip.AppendWithoutVerstat(buf, pkt, at, int(u.End), false)
	if !bracketed {
		buf = append(buf, '>')
	}
	buf = sip.AppendWithoutVerstat(buf, pkt, int(u.End), end, true)
	ann.add(int(u.Start), end-int(u.Start), buf[start:])
	// The other identities the call names (From, the other recorded
	// P-Asserted-Identity values) lose theirs too: a network that strips
	// P-Asserted-Identity towards the user would otherwise show a verstat
	// the caller wrote on From.
	others := func(o *sip.NameAddr) {
		if o.URI.Start == u.Start || o.URI.Empty() {
			return
		}
		ou, oe := int(o.URI.Start), max(int(o.Value.End), int(o.URI.End))
		if s, e := sip.NextVerstat(pkt, ou, int(o.URI.End), false); s == e {
			if s, e := sip.NextVerstat(pkt, int(o.URI.End), oe, true); s == e {
				return
			}
		}
		start := len(buf)
		buf = sip.AppendWithoutVerstat(buf, pkt, ou, int(o.URI.End), false)
		buf = sip.AppendWithoutVerstat(buf, pkt, int(o.URI.End), oe, true)
		ann.add(ou, oe-ou, buf[start:])
	}
	others(&m.From)
	for i := range min(int(m.NumPAI), len(m.PAI)) {
		others(&m.PAI[i])
	}
	return ann, buf
}

func reasonPhrase(code int) string {
	switch code {
	case 403:
		return "Stale Date"
	case 428:
		return "Use Identity Header"
	case 436:
		return "Bad Identity Info"
	case 437:
		return "Unsupported Credential"
	case 438:
		return "Invalid Identity Header"
	}
	return "Forbidden"
}

// appendQuotedSafe appends s for a quoted-string, dropping quotes,
// backslashes and control characters.
func appendQuotedSafe(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			dst = append(dst, c)
		}
	}
	return dst
}
