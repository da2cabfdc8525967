package api

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/policy"
)

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Health = func() any { return []hsm.SignerHealth{{Name: "soft", State: hsm.StateClosed, Ready: true}} }
	})
	r := e.do(t, "GET", "/healthz", "", "Authorization", "")
	if r.status != 200 || r.json(t)["status"] != "ok" || !strings.Contains(string(r.body), `"name":"soft"`) {
		t.Fatalf("healthz %d %s", r.status, r.body)
	}
	r = e.do(t, "GET", "/readyz", "", "Authorization", "")
	m := r.json(t)
	if r.status != 200 || m["ready"] != true || m["checks"].(map[string]any)["signer"] != "ok" || m["checks"].(map[string]any)["policy"] != "ok" {
		t.Fatalf("readyz %d %s", r.status, r.body)
	}
	checkErr(t, e.do(t, "POST", "/healthz", "{}"), 405, "policyException", "POL4050")
}

func TestAdminReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	writeFile(t, path, testToken+"\n")
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	var fail error
	var mu sync.Mutex
	reloads := 0
	e := newEnv(t, func(c *Config) {
		c.Tokens = toks
		c.Reload = func() error {
			mu.Lock()
			defer mu.Unlock()
			if fail != nil {
				return fail
			}
			reloads++
			return nil
		}
	})
	const newToken = "new-token-abcdefghijklmnop"
	// a reload function that refuses: tokens stay, reason returned
	writeFile(t, path, newToken+"\n")
	fail = errors.New("config: invalid: policy rule 2: bad prefix")
	checkErr(t, e.do(t, "POST", "/admin/reload", ""), 400, "serviceException", "SVC4005", "configuration", "bad prefix")
	if !toks.Valid(testToken) || toks.Valid(newToken) {
		t.Fatal("a refused reload changed the tokens")
	}
	// a bad token file: refused, reload function not run
	fail = nil
	writeFile(t, path, "short\n")
	checkErr(t, e.do(t, "POST", "/admin/reload", ""), 400, "serviceException", "SVC4005", "configuration", "shorter")
	if reloads != 0 {
		t.Fatal("reload ran with a bad token file")
	}
	// needs the token
	checkErr(t, e.do(t, "POST", "/admin/reload", "", "Authorization", ""), 401, "serviceException", "SVC4001")
	checkErr(t, e.do(t, "GET", "/admin/reload", ""), 405, "policyException", "POL4050")
	// good
	writeFile(t, path, newToken+"\n")
	r := e.do(t, "POST", "/admin/reload", "")
	if r.status != 200 || reloads != 1 {
		t.Fatalf("reload: %d %s", r.status, r.body)
	}
	checkErr(t, e.do(t, "POST", "/stir/v1/attestation", `{"attestationRequest":{"orig":{"tn":"1"}}}`), 401, "serviceException", "SVC4005")
	if r := e.do(t, "POST", "/admin/reload", "", "Authorization", "Bearer "+newToken); r.status != 200 {
		t.Fatalf("reload with the new token: %d %s", r.status, r.body)
	}
}

// TestReloadUnderLoad reloads tokens and policy while clients sign and ask
// for attestations: every request must succeed.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	writeFile(t, path, testToken+"\n")
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	hold := testPolicy(t)
	flip := false
	e := newEnv(t, func(c *Config) {
		c.Tokens, c.Policy = toks, hold
		c.Reload = func() error {
			flip = !flip
			def := "C"
			if flip {
				def = "B"
			}
			tbl, err := policy.Build(policy.Config{Rules: []policy.RuleConfig{{Name: "retail", Attest: "A", Numbers: []string{"+1215555*"}}}}, def)
			if err != nil {
				return err
			}
			hold.Store(tbl)
			return nil
		}
	})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	counts := map[int]int{}
	deadline := time.Now().Add(10 * time.Second)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				var r resp
				if w%2 == 0 {
					r = e.do(t, "POST", "/stir/v1/signing", signBody("A", "12155550100", []string{"12155550199"}, time.Now().Unix(), ""))
				} else {
					r = e.do(t, "POST", "/stir/v1/attestation", `{"attestationRequest":{"orig":{"tn":"12155550100"}}}`)
					if ar := r.json(t)["attestationResponse"].(map[string]any); ar["attest"] != "A" {
						t.Errorf("attestation during reload: %s", r.body)
					}
				}
				mu.Lock()
				counts[r.status]++
				mu.Unlock()
			}
		}()
	}
	for i := range 20 {
		tok := testToken
		if i%2 == 1 {
			tok = testToken + "\n# rotated\nsecond-token-0123456789"
		}
		writeFile(t, path, tok+"\n")
		if r := e.do(t, "POST", "/admin/reload", ""); r.status != 200 {
			t.Errorf("reload %d: %d %s", i, r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(counts) != 1 || counts[200] == 0 {
		t.Fatalf("statuses during reloads: %v", counts)
	}
	t.Logf("%d requests during 20 reloads, all 200", counts[200])
}

func TestMetricsAfterTraffic(t *testing.T) {
	e := newEnv(t, nil)
	before := scrape(t, e)
	const good, bad, unauth = 7, 3, 2
	for range good {
		if r := e.do(t, "POST", "/stir/v1/signing", signBody("C", "12155550100", []string{"12155550199"}, time.Now().Unix(), "")); r.status != 200 {
			t.Fatal(r.status)
		}
	}
	for range bad {
		e.do(t, "POST", "/stir/v1/signing", `{`)
	}
	for range unauth {
		e.do(t, "POST", "/stir/v1/attestation", `{}`, "Authorization", "")
	}
	after := scrape(t, e)
	for _, c := range []struct {
		name string
		want float64
	}{
		{`shakenline_api_requests_total{route="signing",code="200"}`, good},
		{`shakenline_api_requests_total{route="signing",code="400"}`, bad},
		{`shakenline_api_requests_total{route="attestation",code="401"}`, unauth},
		{`shakenline_api_signed_total{attest="C"}`, good},
		{`shakenline_api_request_duration_seconds_count{route="signing"}`, good + bad},
		{`shakenline_api_requests_total{route="metrics",code="200"}`, 1},
	} {
		if got := after[c.name] - before[c.name]; got != c.want {
			t.Errorf("%s grew by %v, want %v", c.name, got, c.want)
		}
	}
	if _, ok := after[`shakenline_api_requests_total{route="verification",code="503"}`]; !ok {
		t.Error("counters are not declared up front")
	}
}

// scrape fetches /metrics and parses the text exposition strictly: every
// line is a comment or `name{labels} value`.
func scrape(t *testing.T, e *testEnv) map[string]float64 {
	t.Helper()
	r := e.do(t, "GET", "/metrics", "", "Authorization", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %v", r.status, r.header)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(r.body)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			t.Fatalf("bad exposition line %q", line)
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		name := line[:i]
		if open := strings.IndexByte(name, '{'); open >= 0 && !strings.HasSuffix(name, "}") {
			t.Fatalf("bad labels in %q", line)
		}
		out[name] = v
	}
	return out
}
