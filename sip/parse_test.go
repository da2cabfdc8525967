package sip

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func str(b []byte, s Span) string { return string(s.In(b)) }

func mustParse(t *testing.T, b []byte) *Message {
	t.Helper()
	var m Message
	if err := m.Parse(b); err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	checkSpans(t, &m, b)
	return &m
}

func TestParseSIPpInvite(t *testing.T) {
	b := inviteSIPp
	m := mustParse(t, b)
	if !m.IsRequest || m.Method != MethodInvite || str(b, m.MethodName) != "INVITE" {
		t.Errorf("method = %v %q", m.Method, str(b, m.MethodName))
	}
	if got := str(b, m.RequestURI); got != "sip:service@198.18.0.2:5060" {
		t.Errorf("RequestURI = %q", got)
	}
	if got := str(b, m.StartLine); got != "INVITE sip:service@198.18.0.2:5060 SIP/2.0" {
		t.Errorf("StartLine = %q", got)
	}
	v := m.Via
	if str(b, v.Transport) != "UDP" || str(b, v.Host) != "198.18.0.1" || v.Port != 5061 ||
		str(b, v.Branch) != "z9hG4bK-3114-1-0" || !v.Alone || v.HasRPort || !v.Received.Empty() {
		t.Errorf("Via = %+v", v)
	}
	if got := str(b, v.Line); got != "Via: SIP/2.0/UDP 198.18.0.1:5061;branch=z9hG4bK-3114-1-0\r\n" {
		t.Errorf("Via.Line = %q", got)
	}
	if m.ViaCount != 1 {
		t.Errorf("ViaCount = %d", m.ViaCount)
	}
	if str(b, m.From.URI) != "sip:sipp@198.18.0.1:5061" || str(b, m.From.Tag) != "3114SIPpTag001" ||
		str(b, m.From.Value) != "sipp <sip:sipp@198.18.0.1:5061>;tag=3114SIPpTag001" {
		t.Errorf("From = %q %q %q", str(b, m.From.Value), str(b, m.From.URI), str(b, m.From.Tag))
	}
	if str(b, m.To.URI) != "sip:service@198.18.0.2:5060" || !m.To.Tag.Empty() {
		t.Errorf("To = %q tag %q", str(b, m.To.URI), str(b, m.To.Tag))
	}
	if str(b, m.CallID) != "1-3114@198.18.0.1" || m.CSeq != 1 || m.CSeqMethod != MethodInvite {
		t.Errorf("Call-ID %q CSeq %d %v", str(b, m.CallID), m.CSeq, m.CSeqMethod)
	}
	if m.MaxForwards != 70 || str(b, m.MaxForwardsLine) != "Max-Forwards: 70\r\n" {
		t.Errorf("Max-Forwards %d %q", m.MaxForwards, str(b, m.MaxForwardsLine))
	}
	if m.ContentLength != int32(len(sdp)+strings.Count(sdp, "\n")) || str(b, m.Body) != strings.ReplaceAll(sdp, "\n", "\r\n") {
		t.Errorf("Content-Length %d body %q", m.ContentLength, str(b, m.Body))
	}
	if got := string(b[m.HeadersEnd : m.HeadersEnd+4]); got != "\r\nv=" {
		t.Errorf("HeadersEnd at %q", got)
	}
	if m.NumPAI != 0 || m.NumIdentity != 0 || !m.Date.Empty() {
		t.Errorf("unexpected PAI/Identity/Date: %d %d %v", m.NumPAI, m.NumIdentity, m.Date)
	}
}

func TestParseCarrierInvite(t *testing.T) {
	b := inviteCarrier
	m := mustParse(t, b)
	v := m.Via
	if str(b, v.Host) != "198.18.0.5" || v.Port != 0 || str(b, v.Transport) != "UDP" ||
		str(b, v.Branch) != "z9hG4bK7e2b.5d9c0a1f2b0e4c2d8f3a1b0c9d8e7f6a.0" || !v.Alone {
		t.Errorf("top Via = %+v", v)
	}
	if m.ViaCount != 2 {
		t.Errorf("ViaCount = %d", m.ViaCount)
	}
	if !strings.HasPrefix(str(b, v.Line), "Via: SIP/2.0/UDP 198.18.0.5;") || !strings.HasSuffix(str(b, v.Line), ".0\r\n") {
		t.Errorf("Via.Line = %q", str(b, v.Line))
	}
	if m.NumPAI != 2 || m.TotalPAI != 2 {
		t.Fatalf("NumPAI = %d", m.NumPAI)
	}
	if got := str(b, m.PAI[0].URI); got != "sip:+12155550100@carrier.example;user=phone" {
		t.Errorf("PAI[0] = %q", got)
	}
	if got := str(b, m.PAI[0].Value); got != `"Alice Example" <sip:+12155550100@carrier.example;user=phone>` {
		t.Errorf("PAI[0].Value = %q", got)
	}
	if got := str(b, m.PAI[1].URI); got != "tel:+12155550100" {
		t.Errorf("PAI[1] = %q", got)
	}
	if got := str(b, m.From.URI); got != "sip:+12155550100@carrier.example;user=phone" {
		t.Errorf("From.URI = %q", got)
	}
	if str(b, m.From.Tag) != "as5f1c2a4e" {
		t.Errorf("From.Tag = %q", str(b, m.From.Tag))
	}
	if got := str(b, m.Date); got != "Mon, 23 Nov 2026 16:33:39 GMT" {
		t.Errorf("Date = %q", got)
	}
	if m.MaxForwards != 69 || m.CSeq != 102 {
		t.Errorf("Max-Forwards %d CSeq %d", m.MaxForwards, m.CSeq)
	}
	if len(b) < 850 || len(b) > 1100 {
		t.Errorf("carrier INVITE is %d bytes; the benchmark wants ~900", len(b))
	}
}

func TestParseCompactFoldingIPv6(t *testing.T) {
	b := msg(`INVITE tel:+4930123456 SIP/2.0
v: SIP / 2.0 / TCP [2001:2::1]:5060 ;rport;branch=z9hG4bKabc ;received=2001:2::99, SIP/2.0/UDP 198.18.0.7
V:SIP/2.0/UDP 198.18.0.8;branch=z9hG4bKdef,SIP/2.0/UDP 198.18.0.9;branch="z9hG4bK,x"
f: "Doe, John" <sip:+4930123456@example.de;user=phone>
  ;tag=abc
t: sip:+4940654321@example.de;user=phone
i: folded-call-id@example.de
CSEQ :  7
 INVITE
y: eyJhbGciOiJFUzI1NiJ9.eyJ9.c2ln;info=<https://cert.example/a,b.pem>;alg=ES256;ppt="shaken"
Identity: aaa.bbb.ccc;info=<https://cert.example/2.pem>, ddd.eee.fff;info=<https://cert.example/3.pem>
m: <sip:x@198.18.0.7>
l: 0

`)
	m := mustParse(t, b)
	v := m.Via
	if str(b, v.Transport) != "TCP" || str(b, v.Host) != "[2001:2::1]" || v.Port != 5060 ||
		str(b, v.Branch) != "z9hG4bKabc" || !v.HasRPort || !v.RPort.Empty() ||
		str(b, v.Received) != "2001:2::99" || v.Alone {
		t.Errorf("Via = %+v host %q", v, str(b, v.Host))
	}
	if got := str(b, v.Value); got != "SIP / 2.0 / TCP [2001:2::1]:5060 ;rport;branch=z9hG4bKabc ;received=2001:2::99" {
		t.Errorf("Via.Value = %q", got)
	}
	if !strings.HasPrefix(str(b, v.Line), "v: ") || !strings.HasSuffix(str(b, v.Line), "198.18.0.7\r\n") {
		t.Errorf("Via.Line = %q", str(b, v.Line))
	}
	if m.ViaCount != 4 {
		t.Errorf("ViaCount = %d, want 4 (a comma inside a quoted branch does not split)", m.ViaCount)
	}
	if got := str(b, m.From.URI); got != "sip:+4930123456@example.de;user=phone" {
		t.Errorf("From.URI = %q", got)
	}
	if str(b, m.From.Tag) != "abc" {
		t.Errorf("From.Tag = %q (folded)", str(b, m.From.Tag))
	}
	// Bare addr-spec: ;user=phone is a header parameter, not part of the URI.
	if got := str(b, m.To.URI); got != "sip:+4940654321@example.de" {
		t.Errorf("To.URI = %q", got)
	}
	if m.CSeq != 7 || m.CSeqMethod != MethodInvite {
		t.Errorf("CSeq %d %v", m.CSeq, m.CSeqMethod)
	}
	if m.NumIdentity != 3 || m.TotalIdentity != 3 {
		t.Fatalf("NumIdentity = %d", m.NumIdentity)
	}
	if got := str(b, m.Identity[0]); got != `eyJhbGciOiJFUzI1NiJ9.eyJ9.c2ln;info=<https://cert.example/a,b.pem>;alg=ES256;ppt="shaken"` {
		t.Errorf("Identity[0] = %q", got)
	}
	if got := str(b, m.Identity[2]); got != "ddd.eee.fff;info=<https://cert.example/3.pem>" {
		t.Errorf("Identity[2] = %q", got)
	}
	if m.ContentLength != 0 || !m.Body.Empty() || int(m.Body.Start) != len(b) {
		t.Errorf("body %v CL %d len %d", m.Body, m.ContentLength, len(b))
	}
	if m.MaxForwards != -1 || !m.MaxForwardsLine.Empty() {
		t.Errorf("Max-Forwards %d", m.MaxForwards)
	}
}

func TestParseManyPAIAndIdentity(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("INVITE sip:+12155550123@198.18.0.2 SIP/2.0\nVia: SIP/2.0/UDP 198.18.0.1;branch=z9hG4bK1\n" +
		"From: <sip:+12155550100@a.example>;tag=1\nTo: <sip:+12155550123@b.example>\nCall-ID: x\nCSeq: 1 INVITE\n")
	for i := 0; i < 5; i++ {
		sb.WriteString("P-Asserted-Identity: <sip:+1215555010" + string(rune('0'+i)) + "@a.example;user=phone>, <tel:+1215555010" + string(rune('0'+i)) + ">\n")
		sb.WriteString("Identity: h" + string(rune('0'+i)) + ".p.s;info=<https://x.example/c.pem>;alg=ES256;ppt=shaken\n")
		sb.WriteString("Identity: k" + string(rune('0'+i)) + ".p.s;info=<https://x.example/c.pem>\n")
	}
	sb.WriteString("Content-Length: 0\n\n")
	b := msg(sb.String())
	m := mustParse(t, b)
	if m.NumPAI != MaxPAI || m.TotalPAI != 10 {
		t.Errorf("NumPAI %d TotalPAI %d", m.NumPAI, m.TotalPAI)
	}
	if got := str(b, m.PAI[3].URI); got != "tel:+12155550101" {
		t.Errorf("PAI[3] = %q", got)
	}
	if m.NumIdentity != MaxIdentity || m.TotalIdentity != 10 {
		t.Errorf("NumIdentity %d TotalIdentity %d", m.NumIdentity, m.TotalIdentity)
	}
	if got := str(b, m.Identity[3]); !strings.HasPrefix(got, "k1.p.s;") {
		t.Errorf("Identity[3] = %q", got)
	}
}

func TestParseResponse(t *testing.T) {
	b := msg(`SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 198.18.0.1:5061;branch=z9hG4bK-3114-1-0;received=198.18.0.1;rport=5061
From: sipp <sip:sipp@198.18.0.1:5061>;tag=3114SIPpTag001
To: service <sip:service@198.18.0.2:5060>;tag=98765
Call-ID: 1-3114@198.18.0.1
CSeq: 1 INVITE
Content-Length: 0

`)
	m := mustParse(t, b)
	if m.IsRequest || m.StatusCode != 180 || str(b, m.Reason) != "Ringing" || m.Method != MethodNone {
		t.Errorf("status %d %q req %v", m.StatusCode, str(b, m.Reason), m.IsRequest)
	}
	if str(b, m.Via.RPort) != "5061" || !m.Via.HasRPort || str(b, m.Via.Received) != "198.18.0.1" {
		t.Errorf("Via = %+v", m.Via)
	}
	if str(b, m.To.Tag) != "98765" {
		t.Errorf("To.Tag = %q", str(b, m.To.Tag))
	}
	// A response needs none of the request's mandatory headers.
	b2 := msg("SIP/2.0 200 OK\n\n")
	m2 := mustParse(t, b2)
	if m2.StatusCode != 200 || m2.ContentLength != -1 || !m2.Body.Empty() {
		t.Errorf("minimal response: %+v", m2)
	}
}

// Via2 is the via-parm under the top one, in the same line or the next;
// one that does not parse is left empty and the message still parses.
func TestParseSecondVia(t *testing.T) {
	const rest = "From: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
	for name, c := range map[string]struct{ vias, host, rport string }{
		"next line": {"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsl1\nv: SIP/2.0/UDP [2001:2::7]:5071;branch=z9hG4bK2;rport=5072\nVia: SIP/2.0/UDP 198.18.0.9;branch=z9hG4bK3\n", "[2001:2::7]", "5072"},
		"same line": {"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsl1 , SIP/2.0/UDP 198.18.0.5;branch=z9hG4bK2;rport\n", "198.18.0.5", ""},
		"only one":  {"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsl1\n", "", ""},
		"malformed": {"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsl1\nVia: SIP/2.0 198.18.0.5\n", "", ""},
	} {
		b := msg("SIP/2.0 200 OK\n" + c.vias + rest)
		m := mustParse(t, b)
		if str(b, m.Via.Host) != "127.0.0.1" || str(b, m.Via2.Host) != c.host || str(b, m.Via2.RPort) != c.rport {
			t.Errorf("%s: Via %q, Via2 host %q rport %q, want %q %q", name, str(b, m.Via.Host), str(b, m.Via2.Host), str(b, m.Via2.RPort), c.host, c.rport)
		}
		if c.host == "" && !m.Via2.Value.Empty() {
			t.Errorf("%s: Via2 = %+v, want empty", name, m.Via2)
		}
	}
}

func TestParseBareLFAndKeepalive(t *testing.T) {
	// Bare LF line endings, leading CRLF keep-alive, no Content-Length:
	// the rest of the datagram is the body (RFC 3261 section 18.3).
	s := "\r\n\r\nOPTIONS sip:198.18.0.2 SIP/2.0\nVia: SIP/2.0/UDP 198.18.0.1\nFrom: <sip:a@198.18.0.1>;tag=1\n" +
		"To: <sip:198.18.0.2>\nCall-ID: k\nCSeq: 9 OPTIONS\nMax-Forwards: 0\n\nbody"
	b := []byte(s)
	m := mustParse(t, b)
	if m.Method != MethodOptions || m.CSeqMethod != MethodOptions || m.MaxForwards != 0 {
		t.Errorf("method %v/%v mf %d", m.Method, m.CSeqMethod, m.MaxForwards)
	}
	if str(b, m.Body) != "body" || b[m.HeadersEnd] != '\n' || int(m.HeadersEnd) != strings.Index(s, "\n\nbody")+1 {
		t.Errorf("body %q HeadersEnd %d", str(b, m.Body), m.HeadersEnd)
	}
	if str(b, m.MaxForwardsLine) != "Max-Forwards: 0\n" || str(b, m.Via.Line) != "Via: SIP/2.0/UDP 198.18.0.1\n" {
		t.Errorf("lines %q %q", str(b, m.MaxForwardsLine), str(b, m.Via.Line))
	}
}

func TestParseOtherMethodAndExtraBody(t *testing.T) {
	b := msg(`PUBLISH sip:p@198.18.0.2 SIP/2.0
Via: SIP/2.0/UDP 198.18.0.1;branch=z9hG4bK1
From: <sip:p@198.18.0.1>;tag=1
To: <sip:p@198.18.0.2>
Call-ID: k
CSeq: 3 PUBLISH
Content-Length: 2

abcdef`)
	m := mustParse(t, b)
	if m.Method != MethodOther || str(b, m.MethodName) != "PUBLISH" || str(b, m.CSeqMethodName) != "PUBLISH" {
		t.Errorf("method %v %q", m.Method, str(b, m.MethodName))
	}
	if str(b, m.Body) != "ab" {
		t.Errorf("body %q: bytes past Content-Length are ignored", str(b, m.Body))
	}
}

func TestParseReuseResets(t *testing.T) {
	var m Message
	if err := m.Parse(inviteCarrier); err != nil {
		t.Fatal(err)
	}
	if err := m.Parse(inviteSIPp); err != nil {
		t.Fatal(err)
	}
	if m.NumPAI != 0 || !m.Date.Empty() || m.HasDate || m.ViaCount != 1 {
		t.Errorf("state leaked between parses: %+v", m)
	}
}

func TestParseErrors(t *testing.T) {
	const okHead = "INVITE sip:b@198.18.0.2 SIP/2.0\n"
	const via = "Via: SIP/2.0/UDP 198.18.0.1;branch=z9hG4bK1\n"
	const rest = "From: <sip:a@198.18.0.1>;tag=1\nTo: <sip:b@198.18.0.2>\nCall-ID: c\nCSeq: 1 INVITE\n"
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"only CRLF", []byte("\r\n\r\n"), ErrTruncated},
		{"no line end", []byte("INVITE sip:b@x SIP/2.0"), ErrTruncated},
		{"no blank line", msg(okHead + via + rest), ErrTruncated},
		{"cut in header", []byte("INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP x"), ErrTruncated},
		{"body short", msg(okHead + via + rest + "Content-Length: 10\n\nabc"), ErrTruncated},
		{"too large", append(msg(okHead+via+rest+"\n"), make([]byte, MaxMessage)...), ErrTooLarge},
		{"bad version", msg("INVITE sip:b@x SIP/3.0\n" + via + rest + "\n"), ErrStartLine},
		{"no uri", msg("INVITE  SIP/2.0\n" + via + rest + "\n"), ErrStartLine},
		{"extra field", msg("INVITE sip:b@x SIP/2.0 x\n" + via + rest + "\n"), ErrStartLine},
		{"bad method", msg("INV@TE sip:b@x SIP/2.0\n" + via + rest + "\n"), ErrStartLine},
		{"bad status", msg("SIP/2.0 20 OK\n\n"), ErrStartLine},
		{"status 999", msg("SIP/2.0 999 Hm\n\n"), ErrStartLine},
		{"status no space", msg("SIP/2.0 200OK\n\n"), ErrStartLine},
		{"missing via", msg(okHead + rest + "\n"), ErrHeader},
		{"missing from", msg(okHead + via + "To: <sip:b@x>\nCall-ID: c\nCSeq: 1 INVITE\n\n"), ErrHeader},
		{"missing to", msg(okHead + via + "From: <sip:a@x>\nCall-ID: c\nCSeq: 1 INVITE\n\n"), ErrHeader},
		{"missing call-id", msg(okHead + via + "From: <sip:a@x>\nTo: <sip:b@x>\nCSeq: 1 INVITE\n\n"), ErrHeader},
		{"missing cseq", msg(okHead + via + "From: <sip:a@x>\nTo: <sip:b@x>\nCall-ID: c\n\n"), ErrHeader},
		{"no colon", msg(okHead + via + rest + "Foo bar\n\n"), ErrHeader},
		{"bad name", msg(okHead + via + rest + "Fo@o: bar\n\n"), ErrHeader},
		{"leading ws line", msg(okHead + " Via: x\n" + via + rest + "\n"), ErrHeader},
		{"via no sent-by", msg(okHead + "Via: SIP/2.0/UDP\n" + rest + "\n"), ErrHeader},
		{"via no transport", msg(okHead + "Via: SIP/2.0 198.18.0.1\n" + rest + "\n"), ErrHeader},
		{"via bad port", msg(okHead + "Via: SIP/2.0/UDP 198.18.0.1:99999\n" + rest + "\n"), ErrHeader},
		{"via unclosed v6", msg(okHead + "Via: SIP/2.0/UDP [2001:2::1:5060\n" + rest + "\n"), ErrHeader},
		{"via empty elem", msg(okHead + "Via: SIP/2.0/UDP 198.18.0.1,\n" + rest + "\n"), ErrHeader},
		{"via rport junk", msg(okHead + "Via: SIP/2.0/UDP 198.18.0.1;rport=x\n" + rest + "\n"), ErrHeader},
		{"via empty", msg(okHead + "Via:\n" + rest + "\n"), ErrHeader},
		{"from unclosed", msg(okHead + via + "From: <sip:a@x;tag=1\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 INVITE\n\n"), ErrHeader},
		{"from unclosed quote", msg(okHead + via + "From: \"A <sip:a@x>\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 INVITE\n\n"), ErrHeader},
		{"from no scheme", msg(okHead + via + "From: <alice>\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 INVITE\n\n"), ErrHeader},
		{"duplicate from", msg(okHead + via + rest + "From: <sip:c@x>\n\n"), ErrHeader},
		{"duplicate call-id", msg(okHead + via + rest + "i: d\n\n"), ErrHeader},
		{"bad pai", msg(okHead + via + rest + "P-Asserted-Identity: <sip:x@y>, \n\n"), ErrHeader},
		{"empty identity", msg(okHead + via + rest + "Identity: \n\n"), ErrHeader},
		{"call-id space", msg(okHead + via + "From: <sip:a@x>\nTo: <sip:b@x>\nCall-ID: a b\nCSeq: 1 INVITE\n\n"), ErrHeader},
		{"max-forwards 300", msg(okHead + via + rest + "Max-Forwards: 300\n\n"), ErrHeader},
		{"cl letters", msg(okHead + via + rest + "Content-Length: 1a\n\n"), ErrContentLength},
		{"cl negative", msg(okHead + via + rest + "Content-Length: -1\n\n"), ErrContentLength},
		{"cl huge", msg(okHead + via + rest + "Content-Length: 99999999999\n\n"), ErrContentLength},
		{"cl twice", msg(okHead + via + rest + "Content-Length: 0\nl: 0\n\n"), ErrContentLength},
		{"cseq no method", msg(okHead + via + "From: <sip:a@x>\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1\n\n"), ErrCSeq},
		{"cseq no number", msg(okHead + via + "From: <sip:a@x>\nTo: <sip:b@x>\nCall-ID: c\nCSeq: INVITE\n\n"), ErrCSeq},
		{"cseq 2^31", msg(okHead + via + "From: <sip:a@x>\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 2147483648 INVITE\n\n"), ErrCSeq},
		{"cseq wrong method", msg(okHead + via + "From: <sip:a@x>\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 BYE\n\n"), ErrCSeq},
		{"cseq twice", msg(okHead + via + rest + "CSeq: 2 INVITE\n\n"), ErrCSeq},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m Message
			err := m.Parse(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("Parse = %v, want %v", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "sip: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			checkSpans(t, &m, c.in)
		})
	}
}

// TestParseLimitBoundary checks the MaxMessage boundary exactly.
func TestParseLimitBoundary(t *testing.T) {
	head := msg("SIP/2.0 200 OK\n\n")
	b := append(head, bytes.Repeat([]byte("x"), MaxMessage-len(head))...)
	var m Message
	if err := m.Parse(b); err != nil {
		t.Fatalf("message of exactly MaxMessage bytes: %v", err)
	}
	if m.Body.Len() != MaxMessage-len(head) {
		t.Errorf("body %d", m.Body.Len())
	}
	if err := m.Parse(append(b, 'x')); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxMessage+1: %v", err)
	}
}

func TestParseAllocs(t *testing.T) {
	var m Message
	for _, b := range [][]byte{inviteSIPp, inviteCarrier} {
		n := testing.AllocsPerRun(200, func() {
			if err := m.Parse(b); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("Parse allocates %v times", n)
		}
	}
	bad := msg("INVITE sip:b@x SIP/2.0\nVia: SIP/2.0/UDP x\n\n")
	if n := testing.AllocsPerRun(200, func() { _ = m.Parse(bad) }); n != 0 {
		t.Errorf("Parse error path allocates %v times", n)
	}
}

// checkSpans asserts the invariants every parse result keeps, even after an
// error: every span lies within b with Start <= End, HeadersEnd within b.
func checkSpans(t testing.TB, m *Message, b []byte) {
	t.Helper()
	n := int32(len(b))
	check := func(name string, s Span) {
		if s.Start < 0 || s.End < s.Start || s.End > n {
			t.Fatalf("span %s = %+v outside [0,%d]", name, s, n)
		}
	}
	check("MethodName", m.MethodName)
	check("RequestURI", m.RequestURI)
	check("Reason", m.Reason)
	check("StartLine", m.StartLine)
	for _, s := range []Span{m.Via.Value, m.Via.Line, m.Via.Transport, m.Via.Host, m.Via.Branch, m.Via.Received, m.Via.RPort} {
		check("Via", s)
	}
	nas := append([]NameAddr{m.From, m.To}, m.PAI[:]...)
	for _, na := range nas {
		check("NameAddr.Value", na.Value)
		check("NameAddr.URI", na.URI)
		check("NameAddr.Tag", na.Tag)
	}
	check("CallID", m.CallID)
	check("CSeqMethodName", m.CSeqMethodName)
	check("Date", m.Date)
	for _, s := range m.Identity {
		check("Identity", s)
	}
	for _, s := range append(m.Diversion[:], m.HistoryInfoHdr[:]...) {
		check("retarget header", s)
	}
	check("MaxForwardsLine", m.MaxForwardsLine)
	check("Body", m.Body)
	if m.HeadersEnd < 0 || m.HeadersEnd > n {
		t.Fatalf("HeadersEnd %d outside [0,%d]", m.HeadersEnd, n)
	}
	if m.NumPAI < 0 || m.NumPAI > MaxPAI || m.NumIdentity < 0 || m.NumIdentity > MaxIdentity {
		t.Fatalf("counts out of range: %d %d", m.NumPAI, m.NumIdentity)
	}
}
