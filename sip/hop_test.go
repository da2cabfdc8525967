package sip

import "testing"

func TestParseHop(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.1:5070":                    "198.18.0.1:5070 udp",
		"sip:198.18.0.1:5070":                "198.18.0.1:5070 udp",
		"sip:198.18.0.1:5070;transport=tcp":  "198.18.0.1:5070 tcp",
		"SIP:198.18.0.1;TRANSPORT=TLS":       "198.18.0.1:5061 tls",
		"sip:198.18.0.1;lr;transport=udp":    "198.18.0.1:5060 udp",
		"sips:198.18.0.1":                    "198.18.0.1:5061 tls",
		"sip:[2001:2::1]:5080;transport=tcp": "[2001:2::1]:5080 tcp",
		"sip:2001:2::1;transport=tls":        "[2001:2::1]:5061 tls",
		"[::ffff:198.18.0.1]:5060":           "198.18.0.1:5060 udp",
	} {
		ap, tr, err := ParseHop(in)
		if err != nil || ap.String()+" "+tr != want {
			t.Errorf("%q: %v %s %v, want %s", in, ap, tr, err, want)
		}
	}
	for _, in := range []string{"", "198.18.0.1", "sip:example.net:5060", "sip:198.18.0.1;transport=sctp",
		"sips:198.18.0.1;transport=tcp", "tel:+12155550100", "198.18.0.1:0", "sip:[fe80::1%eth0]:5060"} {
		if ap, tr, err := ParseHop(in); err == nil {
			t.Errorf("%q: accepted as %v %s", in, ap, tr)
		}
	}
}

// FuzzParseHop: any string is parsed or refused without a panic; what is
// accepted has a valid address, a port, and one of the three transports,
// and parses again, written as a URI, to the same hop.
func FuzzParseHop(f *testing.F) {
	for _, s := range []string{"198.18.0.1:5070", "sip:198.18.0.1:5070;transport=tcp", "sips:[2001:2::1]",
		"SIP:198.18.0.1;lr;TRANSPORT=TLS", "sip:;transport=", "sips:198.18.0.1;transport=udp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, tr, err := ParseHop(s)
		if err != nil {
			return
		}
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Zone() != "" || (tr != "udp" && tr != "tcp" && tr != "tls") {
			t.Fatalf("%q: accepted as %v %q", s, ap, tr)
		}
		ap2, tr2, err := ParseHop("sip:" + ap.String() + ";transport=" + tr)
		if err != nil || ap2 != ap || tr2 != tr {
			t.Fatalf("%q: %v %s does not round-trip: %v %s %v", s, ap, tr, ap2, tr2, err)
		}
	})
}
