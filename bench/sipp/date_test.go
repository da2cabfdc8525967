package sipp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/internal/prereq"
	"github.com/shakenline/shakenline/passport"
)

// dateLo is TestDateThroughAppliance's own loopback address (the other
// tests of this package use lo).
const dateLo = "127.0.83.1"

// TestDateThroughAppliance runs SIPp calls without Date (uac_no_date.xml),
// with a fresh Date (uac_date.xml, the Date written into the injection
// file just before the run) and with a stale Date (uac_stale_date.xml)
// through the appliance's fast path in proxy mode, signing with a software
// key, to the UAS. In the UAS's message trace: the INVITE that came
// without Date has one, an IMF-fixdate equal to the PASSporT's iat; the
// fresh Date arrives unchanged and is the iat; the stale one arrives
// unsigned with its Date unchanged (RFC 8224 sections 4.1 and 6.1). Every
// call completes.
func TestDateThroughAppliance(t *testing.T) {
	bin, err := exec.LookPath("sipp")
	prereq.Need(t, err)
	wd, _ := os.Getwd()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	uasPort := freePortOn(t, dateLo)
	proxy := startProxy(t, key, netip.AddrPortFrom(netip.MustParseAddr(dateLo), uint16(uasPort)))

	const calls = 10 // per scenario
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	trace := filepath.Join(dir, "uas_msgs.log")
	var uasOut bytes.Buffer
	uas := exec.CommandContext(ctx, bin, "-sf", filepath.Join(wd, "uas.xml"), "-i", dateLo,
		"-p", strconv.Itoa(uasPort), "-m", strconv.Itoa(3*calls), "-trace_msg", "-message_file", trace,
		"-nostdin", "-timeout", "80s")
	uas.Dir = dir
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })
	time.Sleep(300 * time.Millisecond)

	// The fresh Dates: one per call, the current second, written now.
	fresh := filepath.Join(dir, "dated.csv")
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	dates := map[string]bool{}
	for i := range calls {
		d := time.Now().UTC().Format(http.TimeFormat)
		dates[d] = true
		fmt.Fprintf(&csv, "1212555%04d;1202555%04d;%s;\n", i, 100+i, d)
	}
	if err := os.WriteFile(fresh, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct{ scenario, inf string }{
		{"uac_no_date.xml", filepath.Join(wd, "numbers.csv")},
		{"uac_date.xml", fresh},
		{"uac_stale_date.xml", filepath.Join(wd, "numbers.csv")},
	} {
		out, err := exec.CommandContext(ctx, bin, proxy.String(), "-sf", filepath.Join(wd, run.scenario), "-inf", run.inf,
			"-i", dateLo, "-p", strconv.Itoa(freePortOn(t, dateLo)), "-m", strconv.Itoa(calls), "-r", "20",
			"-nostdin", "-timeout", "30s").CombinedOutput()
		if err != nil {
			t.Fatalf("%s through the appliance: %v\n%s", run.scenario, err, tail(out))
		}
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("UAS: %v\n%s", err, tail(uasOut.Bytes()))
	}

	seen := map[string]int{}
	for _, inv := range traceInvites(t, trace) {
		ua := HeaderValues(inv, "User-Agent")
		if len(ua) != 1 {
			t.Fatalf("INVITE without User-Agent:\n%s", inv)
		}
		seen[ua[0]]++
		ids, ds := HeaderValues(inv, "Identity"), HeaderValues(inv, "Date")
		switch ua[0] {
		case "shakenline-sipp-uac-no-date", "shakenline-sipp-uac-date":
			if len(ids) != 1 || len(ds) != 1 {
				t.Fatalf("%s: want one Identity and one Date:\n%s", ua[0], inv)
			}
			id, err := passport.ParseIdentity(ids[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := passport.VerifySignature(&key.PublicKey, id); err != nil {
				t.Fatalf("%s: %v", ua[0], err)
			}
			d, err := time.Parse(http.TimeFormat, ds[0])
			if err != nil || d.Format(http.TimeFormat) != ds[0] {
				t.Fatalf("%s: Date %q is not an IMF-fixdate (%v)", ua[0], ds[0], err)
			}
			if d.Unix() != id.Payload.IAT {
				t.Fatalf("%s: Date %q (%d) but iat %d", ua[0], ds[0], d.Unix(), id.Payload.IAT)
			}
			if ua[0] == "shakenline-sipp-uac-date" && !dates[ds[0]] {
				t.Fatalf("fresh Date changed on the way: %q, sent one of %v", ds[0], dates)
			}
		case "shakenline-sipp-uac-stale-date":
			if len(ids) != 0 || len(ds) != 1 || ds[0] != "Sat, 01 Jan 2000 00:00:00 GMT" {
				t.Fatalf("stale Date: want unsigned, Date unchanged:\n%s", inv)
			}
		default:
			t.Fatalf("unknown User-Agent %q", ua[0])
		}
	}
	for _, ua := range []string{"shakenline-sipp-uac-no-date", "shakenline-sipp-uac-date", "shakenline-sipp-uac-stale-date"} {
		if seen[ua] != calls {
			t.Fatalf("UAS saw %d INVITEs from %s, want %d (%v)", seen[ua], ua, calls, seen)
		}
	}
}

func freePortOn(t *testing.T, ip string) int {
	t.Helper()
	for range 50 { // free for UDP and TCP: the appliance listens on both
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
		c.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP on " + ip)
	return 0
}

// startProxy runs the appliance's fast path in proxy mode on dateLo, to
// next, signing every call with key (attestation A).
func startProxy(t *testing.T, key *ecdsa.PrivateKey, next netip.AddrPort) netip.AddrPort {
	t.Helper()
	return startFastpath(t, dateLo, "https://cert.example.org/sp.pem", key, nil, nil, next)
}

// traceInvites returns the INVITEs in a SIPp -trace_msg message file.
func traceInvites(t *testing.T, path string) [][]byte {
	t.Helper()
	msgs, err := ReadInvites(path)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
