package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/verify"
)

// AuditRule is the rule name audit records carry for HTTP signing requests:
// the client chose the attestation.
const AuditRule = "request"

// PASSporT types for the audit line (audit.Record keeps strings by
// reference).
const (
	pptShaken    = "shaken"
	pptShakenRCD = "shaken+rcd"
	pptDiv       = "div"
)

// signJob is one HTTP signing request on its way to the signer and back.
// Jobs are pooled; a job whose request timed out while the signer still
// holds it is not returned to the pool (the signer may write it later).
type signJob struct {
	req    hsm.Request
	done   chan struct{}
	claims passport.Claims
	tns    []byte // canonical orig and dest digits
	dest   [][]byte
	joined []byte // dest numbers joined with ',' for the audit line
	input  []byte // PASSporT signing input
	ident  []byte // Identity header value
	out    []byte // response body

	abandoned bool // given up while the signer held req
}

func newSignJob() any {
	j := &signJob{
		done:   make(chan struct{}, 1),
		tns:    make([]byte, 0, 256),
		dest:   make([][]byte, 0, 4),
		joined: make([]byte, 0, 64),
		input:  make([]byte, 0, 1024),
		ident:  make([]byte, 0, 1024),
		out:    make([]byte, 0, 1024),
	}
	j.req.Done = j.signal
	return j
}

func (j *signJob) signal(*hsm.Request) { j.done <- struct{}{} }

func (s *Server) signing(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte) {
	var req signingBody
	if e := decode(body, &req, "signingRequest"); e != nil {
		s.fail(w, r, e)
		return
	}
	j := s.jobs.Get().(*signJob)
	if e := s.signOne(ctx, j, req.SigningRequest, r.Header.Get("X-RequestID")); e != nil {
		if !j.abandoned {
			s.jobs.Put(j)
		}
		s.fail(w, r, e)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(j.out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(j.out)
	s.jobs.Put(j)
}

// signOne validates f, signs it and leaves the response body in j.out.
// When the request is abandoned while the signer holds it, j.abandoned is
// set so the caller does not pool j (Done still finds room in j.done).
func (s *Server) signOne(ctx context.Context, j *signJob, f *signingFields, requestID string) *apiError {
	if f == nil {
		return newErr(svc4001, "signingRequest")
	}
	c := &j.claims
	// A div claim makes a div PASSporT (RFC 8946), which carries no
	// attestation: attest may be left out, and is not signed.
	div := len(f.Div) > 0 && string(f.Div) != "null"
	switch {
	case f.Attest == nil && !div:
		return newErr(svc4001, "attest")
	case f.Attest != nil && (len(*f.Attest) != 1 || (*f.Attest)[0] < 'A' || (*f.Attest)[0] > 'C'):
		return newErr(svc4005, "attest", "must be A, B or C")
	case f.Dest == nil || f.Dest.TN == nil:
		return newErr(svc4001, "dest")
	case len(f.Dest.TN) == 0 || len(f.Dest.TN) > MaxDest:
		return newErr(svc4005, "dest", fmt.Sprintf("must hold 1 to %d TNs", MaxDest))
	case f.IAT == nil:
		return newErr(svc4001, "iat")
	case f.Orig == nil || f.Orig.TN == nil:
		return newErr(svc4001, "orig")
	}
	c.Attest = 0
	if f.Attest != nil {
		c.Attest = (*f.Attest)[0]
	}
	now := s.cfg.Now()
	// The fast path's Date rule (package claims): an iat outside freshness
	// gets no PASSporT.
	if *f.IAT <= 0 || claims.Stale(*f.IAT, now.Unix(), s.cfg.Freshness) {
		return newErr(svc4005, "iat", fmt.Sprintf("%d is outside the %v freshness window (the appliance's time is %d): "+
			"RFC 8224 section 4.1, no PASSporT for a stale Date", *f.IAT, s.cfg.Freshness, now.Unix()))
	}
	c.IAT = *f.IAT
	var err error
	var e *apiError
	tns := j.tns[:0]
	if tns, e = appendTN(tns, "orig", *f.Orig.TN); e != nil {
		return e
	}
	origEnd := len(tns)
	ends := [MaxDest]int{}
	for i, tn := range f.Dest.TN {
		if tns, e = appendTN(tns, "dest", tn); e != nil {
			return e
		}
		ends[i] = len(tns)
	}
	j.tns = tns
	c.Orig = tns[:origEnd]
	j.dest = j.dest[:0]
	j.joined = j.joined[:0]
	for i := range f.Dest.TN {
		start := origEnd
		if i > 0 {
			start = ends[i-1]
		}
		j.dest = append(j.dest, tns[start:ends[i]])
		if i > 0 {
			j.joined = append(j.joined, ',')
		}
		j.joined = append(j.joined, tns[start:ends[i]]...)
	}
	c.Dest = j.dest
	if f.OrigID == nil {
		_, _ = rand.Read(c.OrigID[:])
	} else if !parseUUID(*f.OrigID, &c.OrigID) || !equalFoldASCII(passport.OrigIDString(c.OrigID), *f.OrigID) {
		return newErr(svc4005, "origid", "must be a version 4 UUID (RFC 9562)")
	}

	// PASSporT signing input, with the extension claims when there are any.
	var ext map[string]json.RawMessage
	for _, x := range [...]struct {
		name string
		v    json.RawMessage
	}{{"crn", f.CRN}, {"div", f.Div}, {"rcd", f.RCD}, {"rcdi", f.RCDI}} {
		if len(x.v) > 0 && string(x.v) != "null" {
			if ext == nil {
				ext = map[string]json.RawMessage{}
			}
			ext[x.name] = x.v
		}
	}
	// One credential for the request: x5u, key and audit fingerprint.
	cred := s.cfg.Credential.Load()
	// The PASSporT type follows the claims: div makes a div PASSporT,
	// Rich Call Data go into the shaken one (ATIS-1000094).
	b, ppt := cred.Builder, pptShaken
	switch {
	case div:
		if b, err = passport.NewBuilderPPT(cred.Builder.X5U(), passport.PPTDiv); err != nil {
			return newErr(pol5000, "div builder").withStatus(http.StatusInternalServerError)
		}
		ppt = pptDiv
		c.Attest = 0
	case ext != nil && (ext["rcd"] != nil || ext["crn"] != nil):
		ppt = pptShakenRCD
	}
	if ext == nil {
		j.input = b.AppendSigningInput(j.input[:0], c)
	} else if j.input, err = b.AppendSigningInputJSON(j.input[:0], c, ext); err != nil {
		return newErr(svc4005, "signingRequest", err.Error())
	}

	// Sign through the SIP path's dispatcher, under the same budget.
	if cred.Signer == nil {
		countSignFailure("signer-down")
		return newErr(pol5000, "signer-down").withStatus(http.StatusServiceUnavailable)
	}
	j.req.Digest = sha256.Sum256(j.input)
	j.req.Input = j.input // for a remote STI-AS link
	j.req.Err, j.req.SignedBy = nil, ""
	j.req.Deadline = now.Add(s.cfg.Budget)
	if dl, ok := ctx.Deadline(); ok && dl.Before(j.req.Deadline) {
		j.req.Deadline = dl
	}
	if err := cred.Signer.Submit(&j.req); err != nil {
		return signErr(err)
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		j.abandoned = true // the signer still holds j.req: never pool this job
		countSignFailure("timeout")
		return newErr(pol5000, "timeout").withStatus(http.StatusServiceUnavailable)
	}
	if j.req.Err != nil {
		return signErr(j.req.Err)
	}
	switch c.Attest {
	case 'A':
		mSignedA.Inc()
	case 'B':
		mSignedB.Inc()
	case 'C':
		mSignedC.Inc()
	}
	if len(j.req.Identity) > 0 {
		j.ident = append(j.ident[:0], j.req.Identity...) // a remote STI-AS signed
	} else {
		j.ident = b.AppendIdentity(j.ident[:0], j.input, &j.req.Sig)
	}
	j.out = append(j.out[:0], `{"signingResponse":{"identity":`...)
	j.out = appendJSONString(j.out, j.ident)
	j.out = append(j.out, "}}\n"...)

	if s.cfg.Audit != nil {
		rec := audit.Record{Time: now, Orig: c.Orig, Dest: j.joined, Attest: c.Attest, PPT: ppt, Rule: AuditRule,
			Signer: j.req.SignedBy, CertFingerprint: cred.Fingerprint}
		if len(j.req.Identity) > 0 {
			rec.CertFingerprint = "" // a remote STI-AS's certificate, not ours (audit/doc.go)
		}
		var idbuf [36]byte
		if requestID != "" {
			rec.CallID = []byte(requestID)
		} else {
			rec.CallID = passport.AppendOrigID(idbuf[:0], c.OrigID)
		}
		if !s.cfg.Audit.Record(&rec) {
			mAuditDropped.Inc()
		}
	}
	return nil
}

// signErr maps a signer failure to POL5000 with HTTP 503 and the
// P-Identity-Bypass reason of the SIP path as the variable.
func signErr(err error) *apiError {
	reason := hsm.BypassReason(err)
	if errors.Is(err, context.DeadlineExceeded) {
		reason = "timeout"
	}
	if reason == "" {
		reason = "error"
	}
	countSignFailure(reason)
	return newErr(pol5000, reason).withStatus(http.StatusServiceUnavailable)
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (s *Server) verification(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte) {
	var req verificationBody
	if e := decode(body, &req, "verificationRequest"); e != nil {
		s.fail(w, r, e)
		return
	}
	f := req.VerificationRequest
	switch {
	case f == nil:
		s.fail(w, r, newErr(svc4001, "verificationRequest"))
		return
	case f.Identity == nil:
		s.fail(w, r, newErr(svc4001, "identity"))
		return
	case f.From == nil || f.From.TN == nil:
		s.fail(w, r, newErr(svc4001, "from"))
		return
	case f.To == nil || f.To.TN == nil:
		s.fail(w, r, newErr(svc4001, "to"))
		return
	case len(f.To.TN) == 0 || len(f.To.TN) > MaxDest:
		s.fail(w, r, newErr(svc4005, "to", fmt.Sprintf("must hold 1 to %d TNs", MaxDest)))
		return
	case len(*f.Identity) > passport.MaxIdentityLen:
		s.fail(w, r, newErr(svc4005, "identity", "too long"))
		return
	}
	in := verifyInput(s, f)
	if in.err != nil {
		s.fail(w, r, in.err)
		return
	}
	v := s.verifier.Load()
	if v == nil {
		s.fail(w, r, newErr(pol5000, "no trust store configured").withStatus(http.StatusServiceUnavailable))
		return
	}
	res := v.Verify(ctx, in.Input)
	if ctx.Err() != nil {
		s.fail(w, r, newErr(pol5000, "timeout").withStatus(http.StatusServiceUnavailable))
		return
	}
	out := struct {
		R struct {
			Verstat    string `json:"verstat"`
			ReasonCode int    `json:"reasoncode,omitempty"`
			ReasonText string `json:"reasontext,omitempty"`
			ReasonDesc string `json:"reasondesc,omitempty"`
		} `json:"verificationResponse"`
	}{}
	out.R.Verstat, out.R.ReasonCode, out.R.ReasonText, out.R.ReasonDesc = res.Verstat, res.Code, res.Reason, res.Detail
	writeJSON(w, http.StatusOK, out)
}

type verifyIn struct {
	verify.Input
	err *apiError
}

func verifyInput(s *Server, f *verificationFields) verifyIn {
	var in verifyIn
	in.Identity = []string{*f.Identity}
	orig, e := appendTN(nil, "from", *f.From.TN)
	if e != nil {
		in.err = e
		return in
	}
	in.OrigTN = string(orig)
	for _, tn := range f.To.TN {
		d, e := appendTN(nil, "to", tn)
		if e != nil {
			in.err = e
			return in
		}
		in.DestTNs = append(in.DestTNs, string(d))
	}
	if f.Time != nil {
		if *f.Time <= 0 {
			in.err = newErr(svc4005, "time", "must be a positive number of seconds")
			return in
		}
		in.Time = time.Unix(*f.Time, 0)
	} else {
		in.Time = s.cfg.Now()
	}
	return in
}

func (s *Server) attestation(w http.ResponseWriter, r *http.Request, body []byte) {
	var req attestationBody
	if e := decode(body, &req, "attestationRequest"); e != nil {
		s.fail(w, r, e)
		return
	}
	f := req.AttestationRequest
	switch {
	case f == nil:
		s.fail(w, r, newErr(svc4001, "attestationRequest"))
		return
	case f.Orig == nil || f.Orig.TN == nil:
		s.fail(w, r, newErr(svc4001, "orig"))
		return
	}
	var buf [32]byte
	orig, e := appendTN(buf[:0], "orig", *f.Orig.TN)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	if f.Dest != nil {
		if len(f.Dest.TN) > MaxDest {
			s.fail(w, r, newErr(svc4005, "dest", fmt.Sprintf("must hold at most %d TNs", MaxDest)))
			return
		}
		for _, tn := range f.Dest.TN {
			var d [e164.MaxGiven]byte
			if _, e := appendTN(d[:0], "dest", tn); e != nil {
				s.fail(w, r, e)
				return
			}
		}
	}
	var src netip.Addr
	var err error
	if f.Source != nil {
		if src, err = netip.ParseAddr(*f.Source); err != nil {
			s.fail(w, r, newErr(svc4005, "source", "must be an IPv4 or IPv6 address"))
			return
		}
		src = src.Unmap()
	}
	d := s.cfg.Policy.Load().Decide(src, orig)
	out := struct {
		R struct {
			Attest string `json:"attest"`
			Rule   string `json:"rule"`
		} `json:"attestationResponse"`
	}{}
	out.R.Attest, out.R.Rule = string(d.Attest), d.Rule
	writeJSON(w, http.StatusOK, out)
}
