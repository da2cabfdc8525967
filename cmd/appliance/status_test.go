package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
	"github.com/shakenline/shakenline/internal/prereq"
)

// chromiumArgs are the flags headless Chromium runs with in tests and in
// make demo: no sandbox (root), no GPU, no network of its own besides the
// page, an empty profile.
func chromiumArgs(profile string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--window-size=1400,1500", "--hide-scrollbars"}
}

// chromium runs headless Chromium with extra arguments and returns its
// standard output.
func chromium(t *testing.T, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium", append(chromiumArgs(t.TempDir()), extra...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, lastLines(errb.Bytes(), 20))
	}
	return out.Bytes()
}

// TestStatusPageChromium loads GET /status in headless Chromium (Debian
// package chromium) while SIPp drives calls through the appliance, whose
// signer chain is a softhsm2 token then the software key. The DOM Chromium
// built must name both signers and show non-zero call rates; the
// screenshot is kept at $SHAKENLINE_STATUS_PNG (default: the test's
// temporary directory) for people to look at. SHAKENLINE_STATUS_LOAD
// (seconds, default 20) lengthens the load so the minute graph fills.
func TestStatusPageChromium(t *testing.T) {
	prereq.Tools(t, "chromium", "sipp")
	softhsmtest.Require(t)
	loadFor := 20 * time.Second
	if s := os.Getenv("SHAKENLINE_STATUS_LOAD"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 5 || n > 600 {
			t.Fatalf("SHAKENLINE_STATUS_LOAD=%q: want 5..600 seconds", s)
		}
		loadFor = time.Duration(n) * time.Second
	}
	const lo = "127.0.91.1" // this test's own loopback address
	pki := labPKI(t)
	key, err := credential.ReadKeyFile(filepath.Join(pki, "sp.key"))
	if err != nil {
		t.Fatal(err)
	}
	tok := softhsmtest.New(t).NewToken("shakenline-status", key)
	cfg := filepath.Join(t.TempDir(), "appliance.yml")
	writeFileT(t, cfg, fmt.Sprintf(`signers:
  - {name: hsm-primary, pkcs11: %q, timeout: 500ms}
  - {name: soft-fallback, key: %s}
`, tok.URI(), filepath.Join(pki, "sp.key")))
	api := lo + ":18091"
	startServe(t, "--config", cfg, "--sip", lo+":5060", "--next-hop", lo+":5070", "--cert", filepath.Join(pki, "sp.pem"),
		"--x5u", "https://cert.example.org/sp.pem", "--attest", "A", "--api", api, "--lab", "--loops", "1")

	work := t.TempDir()
	calls := int(loadFor.Seconds()+15) * 200
	uas := exec.Command("sipp", "-sf", mustAbs(t, "../../bench/sipp/uas.xml"), "-i", lo, "-p", "5070", "-nostdin",
		"-timeout", strconv.Itoa(int(loadFor.Seconds())+60)+"s")
	uas.Dir = work
	startNSProc(t, "sipp uas", uas)
	time.Sleep(300 * time.Millisecond)
	uac := exec.Command("sipp", lo+":5060", "-sf", mustAbs(t, "../../bench/sipp/uac_invite_only.xml"),
		"-inf", mustAbs(t, "../../bench/sipp/numbers.csv"), "-i", lo, "-p", "5080", "-nostdin",
		"-r", "200", "-m", strconv.Itoa(calls), "-timeout", strconv.Itoa(int(loadFor.Seconds())+30)+"s")
	uac.Dir = work
	startNSProc(t, "sipp uac", uac)
	time.Sleep(loadFor)

	url := "http://" + api + "/status"
	if resp, err := http.Get(url); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /status: %v", err)
	} else {
		resp.Body.Close()
	}
	dom := string(chromium(t, "--dump-dom", url))
	for _, want := range []string{`<b class="signer-name">hsm-primary</b>`, `<b class="signer-name">soft-fallback</b>`,
		`<polyline`, "Certificate in use", "no XDP in proxy mode"} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
	tile := regexp.MustCompile(`<div class="v">([0-9.]+)</div><div class="l">signed calls/s \(10 s\)</div>`).FindStringSubmatch(dom)
	if tile == nil {
		t.Fatalf("no signed calls/s tile in the DOM:\n%s", dom)
	}
	if v, _ := strconv.ParseFloat(tile[1], 64); v <= 0 {
		t.Errorf("signed calls/s %s under load", tile[1])
	}
	rate := regexp.MustCompile(`hsm-primary</b>.*?signer-rate">([0-9.]+)<`).FindStringSubmatch(dom)
	if rate == nil {
		t.Errorf("no rate for hsm-primary in the DOM")
	} else if v, _ := strconv.ParseFloat(rate[1], 64); v <= 0 {
		t.Errorf("hsm-primary signs %s/s under load", rate[1])
	}

	shot := os.Getenv("SHAKENLINE_STATUS_PNG")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "status.png")
	}
	chromium(t, "--screenshot="+shot, url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 1500 || colors(img) < 50 {
		t.Errorf("screenshot %v with %d colours: not the page", b, colors(img))
	}
	t.Logf("status page screenshot: %s", shot)
}

// colors counts the distinct colours of img (at most 1000).
func colors(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= 1000 {
				return len(seen)
			}
		}
	}
	return len(seen)
}
