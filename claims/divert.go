package claims

import (
	"errors"

	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/sip"
)

// MaxDiv is the most div PASSporTs a call may carry: a verifier accepts a
// call forwarded up to five times (one shaken PASSporT and up to five div;
// docs/STANDARDS.md, "div"). The signing side adds none that would take a
// call past it.
const MaxDiv = 5

// MaxHops bounds the retargets Retargets reads from one INVITE.
const MaxHops = 8

// Retarget errors.
var (
	ErrNoRetarget = errors.New("claims: no retarget (no Diversion, no History-Info entry with a cause)")
	ErrRetarget   = errors.New("claims: Diversion or History-Info does not parse")
	ErrHopNumber  = errors.New("claims: a retarget target is not a telephone number")
	ErrHops       = errors.New("claims: more retargets than recorded")
)

// Hop is one retarget of a call: From is the target it was diverted
// from, To the new one, both E.164 digits (rule S of docs/API.md,
// "Telephone numbers").
type Hop struct{ From, To []byte }

// Retargets is the retargeting of one INVITE, oldest first, read by Read
// into its own buffers (reuse one per goroutine: reading allocates
// nothing once they have grown).
type Retargets struct {
	Hops []Hop
	buf  []byte
	raw  []byte
	ds   []sip.Diversion
	hs   []sip.HistoryInfo
	spn  [MaxHops + 1][2]int // number spans in buf, before Hops points into it
}

// Read maps the retarget headers of the INVITE in pkt to hops, oldest
// first; the last hop's To is the Request-URI's number (the new target,
// RFC 8946 section 3). History-Info (RFC 7044) is used when it has an
// entry with a cause parameter (RFC 4458): the path to the last such
// entry (the current target) is followed back, each entry with a cause to
// the entry its mp or rc parameter names, else its parent index, else the
// entry before it, until an entry without a cause (the first target). Otherwise Diversion (RFC 5806): its
// first entry is the most recent diversion, so the entries, last first,
// are the hops' From and each next one (the Request-URI after the first
// entry) its To.
func (r *Retargets) Read(pkt []byte, m *sip.Message, numbers *e164.Canonicalizer) error {
	r.Hops = r.Hops[:0]
	r.buf = r.buf[:0]
	if cap(r.raw) < 64 {
		r.raw = make([]byte, 0, 64)
	}
	n := 0 // spans used
	add := func(u []byte) bool {
		if n >= len(r.spn) {
			return false
		}
		d, global, ok := sip.TelephoneNumber(u, r.raw[:0])
		if !ok {
			return false
		}
		start := len(r.buf)
		var err error
		if r.buf, err = numbers.Append(r.buf, d, global); err != nil {
			r.buf = r.buf[:start]
			return false
		}
		r.spn[n] = [2]int{start, len(r.buf)}
		n++
		return true
	}
	// targets in chain order: spn[0] the first target, spn[n-1] the last
	var ok bool
	r.hs, ok = m.HistoryInfo(pkt, r.hs[:0])
	cause := 0
	for _, h := range r.hs {
		if h.Cause != 0 {
			cause++
		}
	}
	useHI := ok && cause > 0
	switch {
	case useHI:
		// Back from the last entry with a cause (the current target) to
		// the first target, over the entries each was retargeted from.
		var chain [MaxHops + 1]int
		k := 0
		cur := -1
		for i := len(r.hs) - 1; i >= 0; i-- {
			if r.hs[i].Cause != 0 {
				cur = i
				break
			}
		}
		for cur >= 0 {
			if k == len(chain) {
				return ErrHops
			}
			chain[k] = cur
			k++
			if r.hs[cur].Cause == 0 {
				break
			}
			cur = r.previous(pkt, cur)
		}
		for j := k - 1; j >= 0; j-- {
			if !add(r.hs[chain[j]].URI.In(pkt)) {
				return ErrHopNumber
			}
		}
	case m.NumDiversion == 0 && m.NumHistoryInfo > 0 && !ok:
		return ErrRetarget
	case m.NumDiversion == 0:
		return ErrNoRetarget
	default:
		if r.ds, ok = m.Diversions(pkt, r.ds[:0]); !ok {
			return ErrRetarget
		}
		if len(r.ds) > MaxHops {
			return ErrHops
		}
		for i := len(r.ds) - 1; i >= 0; i-- {
			if !add(r.ds[i].URI.In(pkt)) {
				return ErrHopNumber
			}
		}
		if !add(m.RequestURI.In(pkt)) {
			return ErrHopNumber
		}
	}
	if n < 2 {
		return ErrNoRetarget
	}
	// The new target is the Request-URI's (History-Info's last entry
	// normally is the Request-URI).
	if useHI {
		n--
		if !add(m.RequestURI.In(pkt)) {
			return ErrHopNumber
		}
	}
	for i := 0; i+1 < n; i++ {
		a, b := r.spn[i], r.spn[i+1]
		r.Hops = append(r.Hops, Hop{From: r.buf[a[0]:a[1]:a[1]], To: r.buf[b[0]:b[1]:b[1]]})
	}
	return nil
}

// previous finds the entry hi-entry i was retargeted from: the one its mp
// or rc parameter names, else its parent index, else the one before it.
func (r *Retargets) previous(pkt []byte, i int) int {
	h := r.hs[i]
	ref := h.MP
	if ref.Empty() {
		ref = h.RC
	}
	if ref.Empty() {
		idx := h.Index.In(pkt)
		for k := len(idx) - 1; k > 0; k-- {
			if idx[k] == '.' {
				ref = sip.Span{Start: h.Index.Start, End: h.Index.Start + int32(k)}
				break
			}
		}
	}
	if !ref.Empty() {
		for j := i - 1; j >= 0; j-- {
			if string(r.hs[j].Index.In(pkt)) == string(ref.In(pkt)) {
				return j
			}
		}
	}
	return i - 1
}
