package stias

import (
	"bytes"
	"encoding/base64"
	"testing"
	"time"

	"github.com/shakenline/shakenline/passport"
)

// FuzzAnswer: whatever a remote STI-AS answers, the client never panics,
// and an answer it accepts is an ES256 PASSporT of the ppt and typ asked
// for, with an x5u and exactly the claims asked for.
func FuzzAnswer(f *testing.F) {
	b, err := passport.NewBuilder("https://cert.example.net/ours.pem")
	if err != nil {
		f.Fatal(err)
	}
	c := passport.Claims{Attest: 'A', Orig: []byte("12155550121"), Dest: [][]byte{[]byte("12155550131")}, IAT: time.Now().Unix()}
	in := b.AppendSigningInput(nil, &c)
	hdr, claims, err := passport.ParseSigningInput(in)
	if err != nil {
		f.Fatal(err)
	}
	remote, err := passport.NewBuilder("https://sti-as.example.net/x5u/sp.pem")
	if err != nil {
		f.Fatal(err)
	}
	var sig [64]byte
	good := remote.AppendIdentity(nil, remote.AppendSigningInput(nil, &c), &sig)
	f.Add([]byte(`{"signingResponse":{"identity":"` + string(good) + `"}}`))
	f.Add([]byte(`{"signingResponse":{"identity":"` + string(in) + `.` + base64.RawURLEncoding.EncodeToString(sig[:]) + `"}}`))
	other := c
	other.Attest = 'B'
	f.Add([]byte(`{"signingResponse":{"identity":"` + string(remote.AppendIdentity(nil, remote.AppendSigningInput(nil, &other), &sig)) + `"}}`))
	f.Add([]byte(`{"signingResponse":{}}`))
	f.Add([]byte(`{"requestError":{"serviceException":{"messageId":"SVC4000"}}}`))
	f.Add([]byte(`{"signingResponse":{"identity":"a.b.c;info=<x>"}}`))
	cl, err := New(Config{Name: "fuzz", URL: "https://sti-as.example.net/stir/v1/signing"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ident, x5u, err := cl.answer(body, hdr, claims)
		if err != nil {
			return
		}
		id, err := passport.ParseIdentity(ident)
		if err != nil {
			t.Fatalf("accepted an Identity that does not parse: %v", err)
		}
		if id.Header.Alg != "ES256" || id.Header.PPT != hdr.PPT || id.Header.Typ != hdr.Typ || x5u == "" || id.Header.X5U != x5u {
			t.Fatalf("accepted header %+v (x5u %q)", id.Header, x5u)
		}
		_, got, err := passport.ParseSigningInput(id.SigningInput)
		if err != nil {
			t.Fatal(err)
		}
		cg, _ := passport.CanonicalJSON(got)
		ca, _ := passport.CanonicalJSON(claims)
		if !bytes.Equal(cg, ca) {
			t.Fatalf("accepted claims %s, asked %s", got, claims)
		}
	})
}
