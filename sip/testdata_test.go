package sip

import (
	"strconv"
	"strings"
)

// msg turns a readable message into wire form: "\n" becomes CRLF, and
// "#CL#" is replaced by the byte length of the body (what follows the first
// empty line).
func msg(s string) []byte {
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		s = strings.ReplaceAll(s, "#CL#", strconv.Itoa(len(s)-(i+4)))
	}
	return []byte(s)
}

const sdp = `v=0
o=user1 53655765 2353687637 IN IP4 198.18.0.10
s=-
c=IN IP4 198.18.0.10
t=0 0
m=audio 6000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
`

// inviteSIPp is what SIPp's built-in uac scenario sends.
var inviteSIPp = msg(`INVITE sip:service@198.18.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP 198.18.0.1:5061;branch=z9hG4bK-3114-1-0
From: sipp <sip:sipp@198.18.0.1:5061>;tag=3114SIPpTag001
To: service <sip:service@198.18.0.2:5060>
Call-ID: 1-3114@198.18.0.1
CSeq: 1 INVITE
Contact: sip:sipp@198.18.0.1:5061
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp
Content-Length:   #CL#

` + sdp)

const sdpShort = `v=0
o=- 5365 2353 IN IP4 198.18.0.9
s=-
c=IN IP4 198.18.0.9
t=0 0
m=audio 16000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
`

// inviteCarrier is a ~900-byte INVITE as it leaves a Kamailio-fronted SBC:
// two Via lines (one with received/rport), P-Asserted-Identity sip and tel
// in one header, Date, and the usual carrier headers.
var inviteCarrier = msg(`INVITE sip:+12155550123@198.18.0.2:5060;user=phone SIP/2.0
Record-Route: <sip:198.18.0.5;lr;ftag=as5f1c2a4e;did=a3b.c1>
Via: SIP/2.0/UDP 198.18.0.5;branch=z9hG4bK7e2b.5d9c0a1f2b0e4c2d8f3a1b0c9d8e7f6a.0
Via: SIP/2.0/UDP 198.18.0.9:5060;received=198.18.0.9;rport=5060;branch=z9hG4bK-524287-1---8a9c4d3e2f1b0a96
Max-Forwards: 69
From: "Alice Example" <sip:+12155550100@carrier.example;user=phone>;tag=as5f1c2a4e
To: <sip:+12155550123@peer.example;user=phone>
Call-ID: 6b8c0e2a1f3d4c5b9a7e6d5c4b3a2910@198.18.0.9
CSeq: 102 INVITE
Contact: <sip:+12155550100@198.18.0.9:5060;transport=udp>
P-Asserted-Identity: "Alice Example" <sip:+12155550100@carrier.example;user=phone>, <tel:+12155550100>
Date: Mon, 23 Nov 2026 16:33:39 GMT
Supported: timer
Content-Type: application/sdp
Content-Length: #CL#

` + sdpShort)
