package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/shakenline/shakenline/labpki"
)

func TestFrameLen(t *testing.T) {
	msg := "SIP/2.0 200 OK\r\nl: 3\r\nVia: x\r\n\r\nabc"
	for in, want := range map[string]int{
		msg:                              len(msg),
		msg + "INVITE":                   len(msg),
		msg[:len(msg)-1]:                 0,
		"SIP/2.0 200 OK\r\n":             0,
		"SIP/2.0 200 OK\r\n\r\n":         -1,
		"X\r\nContent-Length: z\r\n\r\n": -1,
	} {
		if got := frameLen([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

// The generator and the sink over TCP and TLS: persistent connections,
// every call answered on its connection, ACK and BYE after it.
func TestStreamDirect(t *testing.T) {
	ca, err := labpki.NewCA("loadgen test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.IssueTLS("sink", []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			sc := SinkConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Transport: tr}
			if tr == "tls" {
				sc.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}}
			}
			sink, err := NewSink(sc)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			g, err := NewGenerator(Config{Target: sink.Addr(), Sink: sink, Transport: tr, Sockets: 4, FullCall: true,
				TLS: &tls.Config{RootCAs: pool}})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			const calls = 2000
			res, err := g.Run(context.Background(), Load{Rate: 4000, Count: calls, Duration: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != calls || res.Received != calls || res.Answered != calls || res.ByeOK != calls {
				t.Fatalf("%s: %v", tr, res)
			}
			if st := sink.Stats(); st.Acks != calls || st.Byes != calls || st.Malformed != 0 {
				t.Fatalf("%s: sink %+v", tr, st)
			}
		})
	}
}
