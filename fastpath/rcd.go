package fastpath

import "github.com/shakenline/shakenline/sip"

// Rich Call Data on the terminating side (docs/STANDARDS.md, "rcd"): what
// verified is delivered as RFC 9795 and RFC 9796 describe it, the name as
// the display name of the caller's identities and the logo (and jCard) as
// Call-Info headers marked verified; and, as for verstat, nothing the
// caller wrote may pass for it: every Call-Info element with purpose icon
// or jcard, or with a call-reason, verified or integrity parameter, is
// removed from every call the policy gives to verification.

// rcdCallInfo reports whether a Call-Info element is one only a
// verification service may write.
func rcdCallInfo(pkt []byte, ci *sip.CallInfo) bool {
	if ci.RCD {
		return true
	}
	p := ci.Purpose.In(pkt)
	return equalFoldASCII(p, "icon") || equalFoldASCII(p, "jcard")
}

// rcdMentions reports, for a Call-Info value that does not parse, whether
// it names an RCD purpose or parameter (it is then removed whole).
func rcdMentions(v []byte) bool {
	for _, w := range [...]string{"icon", "jcard", "call-reason", "verified", "integrity"} {
		if containsFold(v, w) {
			return true
		}
	}
	return false
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// stripCallInfo appends to dst the message in pkt (parsed in m) without
// the caller's RCD Call-Info elements: a Call-Info line that holds only
// such elements (or does not parse and names one) goes, one that holds
// others too keeps those. changed is false, and dst unused, when there was
// nothing to remove.
func stripCallInfo(dst, pkt []byte, m *sip.Message, scratch []sip.CallInfo) (out []byte, changed bool) {
	start := len(dst)
	off := 0 // pkt[:off] is in dst already
	for line, v := sip.NextHeader(pkt, m, 0, "call-info", ""); !line.Empty(); line, v = sip.NextHeader(pkt, m, int(line.End), "call-info", "") {
		cis, ok := sip.ParseCallInfo(pkt, v, scratch[:0])
		if !ok {
			if !rcdMentions(v.In(pkt)) {
				continue
			}
			cis = cis[:0]
		}
		drop, keep := 0, 0
		for i := range cis {
			if rcdCallInfo(pkt, &cis[i]) {
				drop++
			} else {
				keep++
			}
		}
		if ok && drop == 0 {
			continue
		}
		changed = true
		dst = append(dst, pkt[off:line.Start]...)
		if keep > 0 {
			// The line with the other elements only.
			dst = append(dst, pkt[line.Start:v.Start]...)
			n := 0
			for i := range cis {
				if rcdCallInfo(pkt, &cis[i]) {
					continue
				}
				if n > 0 {
					dst = append(dst, ", "...)
				}
				dst = append(dst, cis[i].Value.In(pkt)...)
				n++
			}
			dst = append(dst, pkt[v.End:line.End]...)
		}
		off = int(line.End)
	}
	if !changed {
		return dst[:start], false
	}
	return append(dst, pkt[off:]...), true
}

// appendRCDCallInfo appends the Call-Info header that carries what
// verified of a call's Rich Call Data (RFC 9796): the logo
// (purpose=icon) and the jCard (purpose=jcard), each marked verified, the
// call reason as call-reason on the first. Nothing when neither verified.
func appendRCDCallInfo(dst []byte, r *VerifyResult) []byte {
	if r.Icon == "" && r.JCard == "" {
		return dst
	}
	dst = append(dst, "Call-Info: "...)
	n := 0
	for _, l := range [...]struct{ url, purpose string }{{r.JCard, "jcard"}, {r.Icon, "icon"}} {
		if l.url == "" || !safeURI(l.url) {
			continue
		}
		if n > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, '<')
		dst = append(dst, l.url...)
		dst = append(dst, ">;purpose="...)
		dst = append(dst, l.purpose...)
		dst = append(dst, ";verified"...)
		if n == 0 && r.CRN != "" {
			dst = append(dst, ";call-reason=\""...)
			dst = appendQuotedEscaped(dst, r.CRN)
			dst = append(dst, '"')
		}
		n++
	}
	if n == 0 {
		return dst[:len(dst)-len("Call-Info: ")]
	}
	return append(dst, "\r\n"...)
}

// safeURI reports whether u can go between angle brackets in a header.
func safeURI(u string) bool {
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
			return false
		}
	}
	return true
}

// appendQuotedEscaped appends s as the inside of a SIP quoted-string
// (RFC 3261 section 25.1): '"' and '\' escaped, control characters
// dropped, UTF-8 kept.
func appendQuotedEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c == 0x7f:
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// cleanForVerification removes the caller's RCD Call-Info from the INVITE
// in hand (l.msg parsed from pkt) before the loop forwards it unverified,
// reparsing l.msg; it returns the packet to forward.
func (l *loop) cleanForVerification(pkt []byte) []byte {
	out, changed := stripCallInfo(l.clean[:0], pkt, &l.msg, l.cis[:0])
	if !changed || l.msg.Parse(out) != nil {
		if changed {
			_ = l.msg.Parse(pkt) // cannot fail: it parsed before
		}
		return pkt
	}
	l.clean = out
	return out
}
