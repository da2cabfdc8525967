package sip

import (
	"bytes"
	"testing"
)

// forwarded is a call diverted twice: 12025550101 forwarded (no answer)
// to 12025550102, which forwarded (unconditionally) to the Request-URI.
var forwarded = msg(`INVITE sip:+12025550103@198.18.0.2;user=phone SIP/2.0
Via: SIP/2.0/UDP 198.18.0.9:5060;branch=z9hG4bK-fw1
From: <sip:+12155550100@carrier.example;user=phone>;tag=f1
To: <sip:+12025550103@198.18.0.2;user=phone>
Call-ID: fw1@198.18.0.9
CSeq: 1 INVITE
Diversion: <sip:+12025550102@ours.example;user=phone>;reason=unconditional;counter=1;privacy=off,
 "Bob" <tel:+12025550101>;reason="no-answer";counter=1
History-Info: <sip:+12025550101@ours.example>;index=1,<sip:+12025550102@ours.example;cause=408>;index=1.1;mp=1
History-Info: <sip:+12025550103@198.18.0.2;user=phone;cause=302?Reason=SIP%3Bcause%3D302>;index=1.1.1;mp=1.1
Content-Length: 0

`)

func TestDiversions(t *testing.T) {
	b := forwarded
	m := mustParse(t, b)
	if m.NumDiversion != 1 || m.NumHistoryInfo != 2 {
		t.Fatalf("recorded %d Diversion, %d History-Info values", m.NumDiversion, m.NumHistoryInfo)
	}
	ds, ok := m.Diversions(b, nil)
	if !ok || len(ds) != 2 {
		t.Fatalf("Diversions = %d entries, ok %v", len(ds), ok)
	}
	want := []struct{ uri, reason, privacy string }{
		{"sip:+12025550102@ours.example;user=phone", "unconditional", "off"},
		{"tel:+12025550101", "no-answer", ""},
	}
	for i, w := range want {
		d := ds[i]
		if str(b, d.URI) != w.uri || str(b, d.Reason) != w.reason || str(b, d.Privacy) != w.privacy || d.Counter != 1 {
			t.Errorf("entry %d: uri %q reason %q privacy %q counter %d", i, str(b, d.URI), str(b, d.Reason), str(b, d.Privacy), d.Counter)
		}
	}
	hs, ok := m.HistoryInfo(b, nil)
	if !ok || len(hs) != 3 {
		t.Fatalf("HistoryInfo = %d entries, ok %v", len(hs), ok)
	}
	wantH := []struct {
		uri, index, mp string
		cause          int32
	}{
		{"sip:+12025550101@ours.example", "1", "", 0},
		{"sip:+12025550102@ours.example;cause=408", "1.1", "1", 408},
		{"sip:+12025550103@198.18.0.2;user=phone;cause=302?Reason=SIP%3Bcause%3D302", "1.1.1", "1.1", 302},
	}
	for i, w := range wantH {
		h := hs[i]
		if str(b, h.URI) != w.uri || str(b, h.Index) != w.index || str(b, h.MP) != w.mp || h.Cause != w.cause || h.NP {
			t.Errorf("hi-entry %d: %q index %q mp %q cause %d", i, str(b, h.URI), str(b, h.Index), str(b, h.MP), h.Cause)
		}
	}
}

func TestRetargetHeadersRefused(t *testing.T) {
	for _, c := range []struct {
		name, hdr string
		div       bool
	}{
		{"diversion without URI", "Diversion: reason=unconditional", true},
		{"diversion counter", "Diversion: <sip:+1@x>;counter=100", true},
		{"diversion counter not a number", "Diversion: <sip:+1@x>;counter=a", true},
		{"diversion unterminated quote", `Diversion: <sip:+1@x>;reason="no`, true},
		{"diversion empty element", "Diversion: <sip:+1@x>,", true},
		{"history-info addr-spec", "History-Info: sip:+1@x;index=1", false},
		{"history-info cause", "History-Info: <sip:+1@x;cause=3021>;index=1", false},
		{"history-info cause word", "History-Info: <sip:+1@x;cause=busy>;index=1", false},
		{"history-info bad param", "History-Info: <sip:+1@x>;=1", false},
	} {
		b := msg("INVITE sip:+2@y SIP/2.0\nVia: SIP/2.0/UDP x;branch=z9hG4bKa\nFrom: <sip:+1@x>;tag=a\nTo: <sip:+2@y>\nCall-ID: c\nCSeq: 1 INVITE\n" + c.hdr + "\n\n")
		m := mustParse(t, b) // never a reason to refuse the message
		var ok bool
		if c.div {
			_, ok = m.Diversions(b, nil)
		} else {
			_, ok = m.HistoryInfo(b, nil)
		}
		if ok {
			t.Errorf("%s: %q accepted", c.name, c.hdr)
		}
	}
	// More headers than recorded: not ok (a diversion would be missed).
	var sb bytes.Buffer
	sb.WriteString("INVITE sip:+2@y SIP/2.0\nVia: SIP/2.0/UDP x;branch=z9hG4bKa\nFrom: <sip:+1@x>;tag=a\nTo: <sip:+2@y>\nCall-ID: c\nCSeq: 1 INVITE\n")
	for range MaxRetargetHeaders + 1 {
		sb.WriteString("Diversion: <sip:+3@x>\n")
	}
	sb.WriteString("\n")
	b := msg(sb.String())
	m := mustParse(t, b)
	if ds, ok := m.Diversions(b, nil); ok || len(ds) != MaxRetargetHeaders || m.TotalDiversion != MaxRetargetHeaders+1 {
		t.Errorf("%d headers: %d entries, ok %v", MaxRetargetHeaders+1, len(ds), ok)
	}
}

func TestRetargetAllocs(t *testing.T) {
	b := forwarded
	var m Message
	ds := make([]Diversion, 0, 8)
	hs := make([]HistoryInfo, 0, 8)
	n := testing.AllocsPerRun(100, func() {
		if err := m.Parse(b); err != nil {
			t.Fatal(err)
		}
		ds, _ = m.Diversions(b, ds[:0])
		hs, _ = m.HistoryInfo(b, hs[:0])
	})
	if n != 0 {
		t.Errorf("Parse + Diversions + HistoryInfo: %v allocations, want 0", n)
	}
}

func TestNextHeaderAndCallInfo(t *testing.T) {
	b := msg(`INVITE sip:+2@y SIP/2.0
Via: SIP/2.0/UDP x;branch=z9hG4bKa
From: <sip:+1@x>;tag=a
Call-Info: <https://example.com/logo.png>;purpose=icon, <https://example.com/about>;purpose=info
To: <sip:+2@y>
Call-ID: c
CSeq: 1 INVITE
call-info :<https://example.com/jcard.json> ; purpose="jcard";call-reason="Sale";verified
Content-Length: 0

`)
	m := mustParse(t, b)
	var lines []string
	var elems []CallInfo
	for line, v := NextHeader(b, m, 0, "call-info", ""); !line.Empty(); line, v = NextHeader(b, m, int(line.End), "call-info", "") {
		lines = append(lines, str(b, line))
		var ok bool
		if elems, ok = ParseCallInfo(b, v, elems); !ok {
			t.Fatalf("Call-Info %q did not parse", str(b, v))
		}
	}
	if len(lines) != 2 || lines[1] != "call-info :<https://example.com/jcard.json> ; purpose=\"jcard\";call-reason=\"Sale\";verified\r\n" {
		t.Fatalf("lines %q", lines)
	}
	want := []struct {
		uri, purpose string
		rcd          bool
	}{{"https://example.com/logo.png", "icon", false}, {"https://example.com/about", "info", false}, {"https://example.com/jcard.json", "jcard", true}}
	if len(elems) != len(want) {
		t.Fatalf("%d elements", len(elems))
	}
	for i, w := range want {
		if str(b, elems[i].URI) != w.uri || str(b, elems[i].Purpose) != w.purpose || elems[i].RCD != w.rcd {
			t.Errorf("element %d: %q %q %v", i, str(b, elems[i].URI), str(b, elems[i].Purpose), elems[i].RCD)
		}
	}
	if l, _ := NextHeader(b, m, 0, "identity", "y"); !l.Empty() {
		t.Errorf("found an Identity line: %q", str(b, l))
	}
	for _, bad := range []string{"https://x", "<https://x", "<https://x>;=a", ""} {
		bb := []byte(bad)
		if _, ok := ParseCallInfo(bb, Span{0, int32(len(bb))}, nil); ok {
			t.Errorf("Call-Info %q accepted", bad)
		}
	}
}

// checkEntrySpans checks that every span of the entries lies in
// [lo, hi) and that the URI is inside the entry.
func checkEntrySpans(t *testing.T, lo, hi int32, value, uri Span, spans ...Span) {
	t.Helper()
	for _, s := range append(spans, value, uri) {
		if s.Empty() {
			continue
		}
		if s.Start < lo || s.End > hi || s.End < s.Start {
			t.Fatalf("span %+v outside [%d,%d)", s, lo, hi)
		}
	}
	if uri.Start < value.Start || uri.End > value.End {
		t.Fatalf("URI %+v outside the entry %+v", uri, value)
	}
}

func FuzzDiversion(f *testing.F) {
	for _, s := range []string{
		`<sip:+12025550102@ours.example;user=phone>;reason=unconditional;counter=1;privacy=off, "Bob" <tel:+12025550101>;reason="no-answer"`,
		`sip:2025550101@x;reason=user-busy`, `<sip:a@b>;counter=07;screen=no;limit=5;extension="x,y"`, `<sip:a@b>,,<sip:c@d>`, `"a\"b" <sip:a@b>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		ds, ok := ParseDiversion(v, Span{0, int32(len(v))}, nil)
		for _, d := range ds {
			checkEntrySpans(t, 0, int32(len(v)), d.Value, d.URI, d.Reason, d.Privacy)
			if d.Counter < 0 || d.Counter > 99 || d.URI.Empty() {
				t.Fatalf("entry %+v", d)
			}
		}
		if ok && len(ds) == 0 {
			t.Fatal("ok without entries")
		}
		// Deterministic, and the same in a copy placed elsewhere.
		c := append([]byte("xx"), v...)
		ds2, ok2 := ParseDiversion(c, Span{2, int32(len(c))}, nil)
		if ok2 != ok || len(ds2) != len(ds) {
			t.Fatalf("reparse differs: %v %d, then %v %d", ok, len(ds), ok2, len(ds2))
		}
		for i := range ds {
			if !bytes.Equal(ds[i].URI.In(v), ds2[i].URI.In(c)) || ds[i].Counter != ds2[i].Counter {
				t.Fatalf("entry %d differs", i)
			}
		}
	})
}

func FuzzHistoryInfo(f *testing.F) {
	for _, s := range []string{
		`<sip:+12025550101@ours.example>;index=1,<sip:+12025550102@ours.example;cause=408>;index=1.1;mp=1`,
		`<sip:+12025550103@198.18.0.2;user=phone;cause=302?Reason=SIP%3Bcause%3D302>;index=1.1.1;mp=1.1`,
		`<tel:+12025550101;cause=486>;index=1.2;rc=1;np`, `"x" <sip:bob@example.com?Privacy=history>;index=1`, `<sip:a@b>;index="1.1",<sip:c@d>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		hs, ok := ParseHistoryInfo(v, Span{0, int32(len(v))}, nil)
		for _, h := range hs {
			checkEntrySpans(t, 0, int32(len(v)), h.Value, h.URI, h.Index, h.MP, h.RC)
			if h.Cause != 0 && (h.Cause < 100 || h.Cause > 699) {
				t.Fatalf("cause %d", h.Cause)
			}
		}
		if ok && len(hs) == 0 {
			t.Fatal("ok without entries")
		}
		c := append([]byte("xx"), v...)
		hs2, ok2 := ParseHistoryInfo(c, Span{2, int32(len(c))}, nil)
		if ok2 != ok || len(hs2) != len(hs) {
			t.Fatalf("reparse differs")
		}
		for i := range hs {
			if !bytes.Equal(hs[i].Index.In(v), hs2[i].Index.In(c)) || hs[i].Cause != hs2[i].Cause {
				t.Fatalf("entry %d differs", i)
			}
		}
	})
}

func FuzzCallInfo(f *testing.F) {
	for _, s := range []string{`<https://example.com/logo.png>;purpose=icon, <https://example.com/about>;purpose=info`,
		`<https://example.com/jcard.json> ; purpose="jcard";call-reason="Sale, now";verified`, `<data:,x>`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		cs, ok := ParseCallInfo(v, Span{0, int32(len(v))}, nil)
		for _, c := range cs {
			checkEntrySpans(t, 0, int32(len(v)), c.Value, c.URI, c.Purpose)
		}
		if ok && len(cs) == 0 {
			t.Fatal("ok without elements")
		}
	})
}
