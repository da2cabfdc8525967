package loadgen

import (
	"net/netip"
	"strconv"
	"time"
)

// Patchable fields of the INVITE template. Every field has a fixed width so
// that a prebuilt message is patched in place and never changes length.
const (
	fSeq  = iota // 16 hex digits: call sequence number
	fTS   = iota // 16 hex digits: send time, CLOCK_REALTIME ns since the Unix epoch
	fFrom        // 11 digits: calling number without "+"
	fTo          // 11 digits: called number without "+"
	fDate        // 29 bytes: RFC 1123 date (RFC 3261 section 20.17)
	numFields
)

var fieldWidth = [numFields]int{fSeq: 16, fTS: 16, fFrom: 11, fTo: 11, fDate: 29}

const dateLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

// template is a message with the byte offsets of its patchable fields.
type template struct {
	b    []byte
	offs [numFields][]int
}

func (t *template) lit(s string) { t.b = append(t.b, s...) }

func (t *template) field(f int) {
	t.offs[f] = append(t.offs[f], len(t.b))
	for i := 0; i < fieldWidth[f]; i++ {
		t.b = append(t.b, '0')
	}
}

// callFields are the values patched into one INVITE.
type callFields struct {
	seq, ts  uint64
	from, to []byte // 11 digits each
	date     []byte // 29 bytes
}

// patch writes f into msg, which must be a copy of t.b.
func (t *template) patch(msg []byte, f *callFields) {
	for _, o := range t.offs[fSeq] {
		putHex(msg[o:o+16], f.seq)
	}
	for _, o := range t.offs[fTS] {
		putHex(msg[o:o+16], f.ts)
	}
	for _, o := range t.offs[fFrom] {
		copy(msg[o:o+11], f.from)
	}
	for _, o := range t.offs[fTo] {
		copy(msg[o:o+11], f.to)
	}
	for _, o := range t.offs[fDate] {
		copy(msg[o:o+29], f.date)
	}
}

// patchTS writes only the send time into msg (a patched copy of t.b).
func (t *template) patchTS(msg []byte, ts uint64) {
	for _, o := range t.offs[fTS] {
		putHex(msg[o:o+16], ts)
	}
}

const hexDigits = "0123456789abcdef"

// putHex writes v as len(dst) lower-case hex digits (most significant first).
func putHex(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

// getHex parses exactly len(b) (at most 16) hex digits.
func getHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// Call-ID layout: <seq:16 hex>-<ts:16 hex>-<run:8 hex>@shakebench. The
// sink reads seq and send time from it, the generator reads them from the
// responses; stateless proxies never touch the Call-ID.
const (
	callIDSuffix = "@shakebench"
	callIDLen    = 16 + 1 + 16 + 1 + 8 + len(callIDSuffix)
)

// parseCallID extracts seq, ts and run tag from one of our Call-IDs.
func parseCallID(v []byte) (seq, ts uint64, run uint32, ok bool) {
	if len(v) != callIDLen || v[16] != '-' || v[33] != '-' || string(v[42:]) != callIDSuffix {
		return 0, 0, 0, false
	}
	s, ok1 := getHex(v[:16])
	t, ok2 := getHex(v[17:33])
	r, ok3 := getHex(v[34:42])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, false
	}
	return s, t, uint32(r), true
}

// buildInvite makes the INVITE template sent from local to target: about
// 900 bytes with an SDP offer, P-Asserted-Identity tel URI, Date, and the
// fields above. run is the generator's run tag.
func buildInvite(local, target netip.AddrPort, run uint32) *template {
	lh, th := hostString(local.Addr()), hostString(target.Addr())
	lp, tp := strconv.Itoa(int(local.Port())), strconv.Itoa(int(target.Port()))
	runHex := make([]byte, 8)
	putHex(runHex, uint64(run))
	ipVer := "IP4"
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		ipVer = "IP6"
	}
	bareLocal := local.Addr().String()
	sdp := "v=0\r\n" +
		"o=shakebench 2890844526 2890844526 IN " + ipVer + " " + bareLocal + "\r\n" +
		"s=shakebench call\r\n" +
		"c=IN " + ipVer + " " + bareLocal + "\r\n" +
		"t=0 0\r\n" +
		"m=audio 40000 RTP/AVP 0 8 18 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:18 G729/8000\r\n" +
		"a=fmtp:18 annexb=no\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n"

	t := &template{}
	t.lit("INVITE sip:+")
	t.field(fTo)
	t.lit("@" + th + ":" + tp + ";user=phone SIP/2.0\r\n")
	t.lit("Via: SIP/2.0/UDP " + lh + ":" + lp + ";branch=z9hG4bK-")
	t.field(fSeq)
	t.lit(";rport\r\n")
	t.lit("Max-Forwards: 70\r\n")
	t.lit("From: \"Shakebench\" <sip:+")
	t.field(fFrom)
	t.lit("@" + lh + ";user=phone>;tag=")
	t.field(fSeq)
	t.lit("\r\n")
	t.lit("To: <sip:+")
	t.field(fTo)
	t.lit("@" + th + ";user=phone>\r\n")
	t.lit("Call-ID: ")
	t.field(fSeq)
	t.lit("-")
	t.field(fTS)
	t.lit("-" + string(runHex) + callIDSuffix + "\r\n")
	t.lit("CSeq: 1 INVITE\r\n")
	t.lit("Contact: <sip:+")
	t.field(fFrom)
	t.lit("@" + lh + ":" + lp + ";transport=udp>\r\n")
	t.lit("P-Asserted-Identity: <tel:+")
	t.field(fFrom)
	t.lit(">\r\n")
	t.lit("Date: ")
	t.field(fDate)
	t.lit("\r\n")
	t.lit("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, NOTIFY\r\n")
	t.lit("Supported: 100rel, timer, replaces\r\n")
	t.lit("Session-Expires: 1800;refresher=uac\r\n")
	t.lit("Min-SE: 90\r\n")
	t.lit("User-Agent: shakebench/1\r\n")
	t.lit("Content-Type: application/sdp\r\n")
	t.lit("Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n")
	t.lit(sdp)
	return t
}

func hostString(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return a.Unmap().String()
}

// dateCache keeps the Date header value for the current second.
type dateCache struct {
	sec int64
	b   [29]byte
}

func (d *dateCache) get(now time.Time) []byte {
	if s := now.Unix(); s != d.sec {
		d.sec = s
		now.UTC().AppendFormat(d.b[:0], dateLayout)
	}
	return d.b[:]
}
