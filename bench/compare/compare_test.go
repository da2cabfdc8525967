package compare

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// stepSample is `shakebench step --json` output (stdout and the human
// lines of stderr interleaved), trimmed to three steps: the third lost
// 0.5 %, which ends the ramp.
const stepSample = `step: rate 1000/s achieved 999/s sent 1000 recv 1000 lost 0 (0.000%, sink)
{"step":{"target_rate":1000,"achieved_rate":999.2,"send_s":1.0008,"sent":1000,"received":1000,"lost":0,"loss_pct":0,"loss_basis":"sink","with_identity":1000,"duplicates":0,"answered":1000,"failed":0,"provisional":0,"bye_ok":0,"verify_ok":10,"verify_failed":0,"latency":{"p50_us":42.7,"p90_us":75.1,"p99_us":124.4,"p99_9_us":180.2,"max_us":201,"mean_us":49.9}}}
{"step":{"target_rate":2000,"achieved_rate":1998.1,"send_s":1.001,"sent":2000,"received":2000,"lost":0,"loss_pct":0,"loss_basis":"sink","with_identity":2000,"duplicates":0,"answered":2000,"failed":0,"provisional":0,"bye_ok":0,"verify_ok":20,"verify_failed":0,"latency":{"p50_us":45.1,"p90_us":80.3,"p99_us":150.9,"p99_9_us":300.5,"max_us":410,"mean_us":52.3}}}
{"step":{"target_rate":4000,"achieved_rate":3990.4,"send_s":1.0024,"sent":4000,"received":3980,"lost":20,"loss_pct":0.5,"loss_basis":"sink","with_identity":3980,"duplicates":0,"answered":3980,"failed":0,"provisional":0,"bye_ok":0,"verify_ok":39,"verify_failed":0,"latency":{"p50_us":900,"p90_us":5000,"p99_us":21000,"p99_9_us":25000,"max_us":26000,"mean_us":1300}}}
`

func TestParseStepsDerivesSummary(t *testing.T) {
	sum, err := ParseSteps(strings.NewReader(stepSample), 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Steps) != 3 {
		t.Fatalf("got %d steps, want 3", len(sum.Steps))
	}
	if sum.MaxCleanRate != 2000 || sum.Best == nil || sum.Best.Latency.P99 != 150.9 {
		t.Fatalf("max clean %v best %+v, want 2000 with p99 150.9", sum.MaxCleanRate, sum.Best)
	}
	if st := sum.Steps[2]; st.Lost != 20 || st.LossPct != 0.5 || st.Latency.P999 != 25000 || st.WithIdentity != 3980 {
		t.Fatalf("third step parsed as %+v", st)
	}
	// A looser threshold makes the lossy step clean.
	sum, err = ParseSteps(strings.NewReader(stepSample), 1)
	if err != nil || sum.MaxCleanRate != 4000 {
		t.Fatalf("threshold 1 %%: max clean %v, err %v", sum.MaxCleanRate, err)
	}
}

func TestParseStepsUsesSummaryLine(t *testing.T) {
	in := stepSample + `{"summary":{"max_clean_rate":2000,"stop":"loss","steps":[]}}` + "\n"
	sum, err := ParseSteps(strings.NewReader(in), 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stop != "loss" || sum.MaxCleanRate != 2000 || len(sum.Steps) != 3 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestParseStepsErrors(t *testing.T) {
	if _, err := ParseSteps(strings.NewReader("step: human only\n"), 0.1); !errors.Is(err, ErrNoSteps) {
		t.Fatalf("no JSON: err %v, want ErrNoSteps", err)
	}
	if _, err := ParseSteps(strings.NewReader(`{"step":{"target_rate":"x"}}`), 0.1); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func TestParseOpenSSLSpeed(t *testing.T) {
	mr := "+DTP:256:sign:ecdsa:1\n+R5:15772:256:0.46\n+DTP:256:verify:ecdsa:1\n+R6:5523:256:0.50\n+F4:3:256:34286.956522:11046.000000\n"
	s, err := ParseOpenSSLSpeed([]byte(mr))
	if err != nil || s.SignPerSec != 34286.956522 || s.VerifyPerSec != 11046 {
		t.Fatalf("-mr: %+v %v", s, err)
	}
	if us := s.SignMicros(); us < 29.16 || us > 29.17 {
		t.Fatalf("sign micros %v", us)
	}
	human := "                              sign    verify    sign/s verify/s\n 256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0  12000.5\n"
	s, err = ParseOpenSSLSpeed([]byte(human))
	if err != nil || s.SignPerSec != 40000 || s.VerifyPerSec != 12000.5 {
		t.Fatalf("human: %+v %v", s, err)
	}
	if _, err := ParseOpenSSLSpeed([]byte("Doing 256 bits sign ecdsa\n")); !errors.Is(err, ErrNoSpeed) {
		t.Fatalf("err %v", err)
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkSign/raw/sessions=1-2         	    3000	    225397 ns/op	      4437 sig/s
BenchmarkSign/chain/sessions=8         	     547	    300365 ns/op	      3329 sig/s
BenchmarkLatency-2   	       1	1000 ns/op	  50.5 p50_us	 120 p99_us
PASS
`
	bs, err := ParseGoBench([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 || bs[0].Name != "Sign/raw/sessions=1" || bs[0].N != 3000 || bs[0].Metrics["sig/s"] != 4437 {
		t.Fatalf("%+v", bs)
	}
	if bs[1].Name != "Sign/chain/sessions=8" || bs[2].Metrics["p99_us"] != 120 {
		t.Fatalf("%+v", bs)
	}
}

func TestParsePerfAndCategorize(t *testing.T) {
	rep := `# comment
    40.00%  appliance          [.] crypto/internal/fips140/nistec.p256OrdSqr - -
    20.00%  [kernel.kallsyms]  [k] udp_sendmsg
    10.00%  appliance          [.] runtime.mallocgc
     5.00%  appliance          [.] github.com/shakenline/shakenline/sip.(*Message).Parse
     5.00%  libsofthsm2.so     [.] SoftHSM::C_Sign
     2.00%  appliance          [.] crypto/internal/fips140/sha256.blockAVX2
`
	es, err := ParsePerfReport([]byte(rep))
	if err != nil || len(es) != 6 || !es[1].Kernel || es[0].DSO != "appliance" || es[0].Symbol != "crypto/internal/fips140/nistec.p256OrdSqr" {
		t.Fatalf("%+v %v", es, err)
	}
	got := map[string]float64{}
	for _, c := range Categorize(es) {
		got[c.Name] = c.Percent
	}
	for prefix, want := range map[string]float64{"ECDSA": 40, "kernel": 20, "Go runtime": 10, "SIP parse": 5, "softhsm2": 5, "SHA-256": 2} {
		found := false
		for n, v := range got {
			if strings.HasPrefix(n, prefix) {
				found = true
				if v != want {
					t.Errorf("%s: %v, want %v", n, v, want)
				}
			}
		}
		if !found {
			t.Errorf("no category %s in %v", prefix, got)
		}
	}
}

const invite = "INVITE sip:+12125550100@127.0.0.1:5060;user=phone SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK-1;rport\r\n" +
	"From: \"Shakebench\" <sip:+14045550123@127.0.0.1;user=phone>;tag=abc\r\n" +
	"To: <sip:+12125550100@127.0.0.1;user=phone>\r\n" +
	"Call-ID: 1@x\r\nCSeq: 1 INVITE\r\n" +
	"P-Asserted-Identity: <tel:+14045550123>\r\n" +
	"Content-Length: 4\r\n\r\nv=0\n"

func TestAnonymize(t *testing.T) {
	out := string(Anonymize(nil, []byte(invite)))
	if strings.Contains(out, "14045550123") || strings.Contains(out, "P-Asserted-Identity") {
		t.Fatalf("calling number left in:\n%s", out)
	}
	if !strings.Contains(out, "\r\n"+anonFrom+";tag=abc\r\n") {
		t.Fatalf("From not anonymized with its tag:\n%s", out)
	}
	if !strings.Contains(out, "To: <sip:+12125550100@") || !strings.HasSuffix(out, "Content-Length: 4\r\n\r\nv=0\n") {
		t.Fatalf("other headers or body changed:\n%s", out)
	}
	bye := []byte(strings.Replace(invite, "INVITE sip", "BYE sip", 1))
	if got := Anonymize(nil, bye); !bytes.Equal(got, bye) {
		t.Fatal("non-INVITE changed")
	}
}

func FuzzAnonymize(f *testing.F) {
	f.Add([]byte(invite))
	f.Add([]byte("INVITE x\r\nf: <sip:1@a>\r\n\r\n"))
	f.Add([]byte("INVITE \r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := Anonymize(nil, b)
		if end := bytes.Index(b, []byte("\r\n\r\n")); end >= 0 && bytes.HasPrefix(b, []byte("INVITE ")) {
			if !bytes.HasSuffix(out, b[end+2:]) {
				t.Fatalf("body not kept: %q -> %q", b, out)
			}
		}
	})
}

func TestGoalsAndSummary(t *testing.T) {
	sum, err := ParseSteps(strings.NewReader(stepSample), 0.1)
	if err != nil {
		t.Fatal(err)
	}
	r := &Run{Started: time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC), OpenSSL: &OpenSSLSpeed{SignPerSec: 40000}}
	app := SetupResult{Setup: setupNamed(t, "appliance-sign-soft"), Summary: sum, Fixed: &FixedRun{Rate: 1600, CPUMicros: 50}}
	app.Fixed.Result.Received, app.Fixed.Result.WithIdentity, app.Fixed.Result.Latency.P99 = 3200, 3200, 800
	kam := SetupResult{Setup: setupNamed(t, "kamailio-sign")}
	kam.Summary.MaxCleanRate = 500
	r.Setups = []SetupResult{kam, app}
	g := ComputeGoals(r)
	if g.Speedup != 4 || g.OK[0] || !g.Known[0] {
		t.Errorf("speedup %v ok %v", g.Speedup, g.OK[0])
	}
	if g.CostRatio != 2 || g.OK[1] {
		t.Errorf("cost ratio %v (50 µs vs 25 µs) ok %v", g.CostRatio, g.OK[1])
	}
	if g.P99 != 800 || !g.OK[2] {
		t.Errorf("p99 %v ok %v", g.P99, g.OK[2])
	}
	s := Summary(r, "x/", false)
	for _, want := range []string{"| 4.0× | **not met** |", "50.0 µs / 25 µs = 2.00×", "| 800 µs | **met** |", "| appliance, signing, software key | 2000 | 45 / 151 |"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func setupNamed(t *testing.T, name string) Setup {
	t.Helper()
	for _, s := range Setups {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no setup %s", name)
	return Setup{}
}

// The SIP over TCP and TLS goals: TCP against UDP on the same core (70 %),
// against Kamailio + secsipid over TCP (5×), TLS beside TCP.
func TestStreamGoals(t *testing.T) {
	r := &Run{}
	add := func(name string, rate, cpu float64) {
		sr := SetupResult{Setup: setupNamed(t, name), Fixed: &FixedRun{CPUMicros: cpu}}
		sr.Summary.MaxCleanRate = rate
		r.Setups = append(r.Setups, sr)
	}
	add("appliance-sign-soft", 20000, 40)
	add("appliance-sign-soft-tcp", 15000, 50)
	add("appliance-sign-soft-tls", 9000, 80)
	add("kamailio-sign-tcp", 2500, 300)
	s := streamSummary(r)
	for _, want := range []string{"15000 / 20000 = 75 % | **met** |", "15000 / 2500 = 6.0× | **met** |", "TLS 9000/s, 80.0 µs; TCP 15000/s, 50.0 µs; UDP 40.0 µs"} {
		if !strings.Contains(s, want) {
			t.Errorf("stream summary lacks %q:\n%s", want, s)
		}
	}
	r.Setups[1].Summary.MaxCleanRate = 12000
	if s := streamSummary(r); !strings.Contains(s, "= 60 % | **not met** |") {
		t.Errorf("60 %% not flagged:\n%s", s)
	}
	// A run at 80 % that lost calls qualifies the goals taken from the
	// ramp, and the summary table flags it.
	r.Params = DefaultParams(false)
	f := &r.Setups[1].Fixed.Result
	f.TargetRate, f.AchievedRate, f.Sent, f.Received, f.WithIdentity, f.LossPct = 9600, 9600, 38400, 11520, 11520, 70
	s = streamSummary(r)
	if !strings.Contains(s, "= 60 % (steps of 1.5 s; the 4 s run at 80 % lost 70.0 %, 70.0 % not delivered signed: not sustained) |") {
		t.Errorf("a run at 80 %% that lost 70 %% does not qualify the TCP goal:\n%s", s)
	}
	if s := Summary(r, "x/", false); !strings.Contains(s, "**not sustained: 70.0 % lost, 70.0 % not delivered signed**") ||
		strings.Count(s, "not sustained:") != 1 {
		t.Errorf("summary table does not flag exactly the TCP row:\n%s", s)
	}
}

// TestLatencyMethodFollowsStamps: the report names what its latency
// columns measure from what the steps recorded, so a redrawn old run keeps
// its old description and a new one says kernel stamps.
func TestLatencyMethodFollowsStamps(t *testing.T) {
	sum, err := ParseSteps(strings.NewReader(stepSample), 0.1)
	if err != nil {
		t.Fatal(err)
	}
	r := &Run{Setups: []SetupResult{{Setup: setupNamed(t, "appliance-sign-soft"), Summary: sum}}}
	if s := Summary(r, "", false); !strings.Contains(s, "sink read time − send time, one process clock") || strings.Contains(s, "SO_TIMESTAMPNS") {
		t.Errorf("old run described as kernel-stamped:\n%s", s)
	}
	r.Setups[0].Summary.Steps[0].RxKernelStamped = 1000
	if s := Summary(r, "", false); !strings.Contains(s, "sink kernel RX stamp − send time before sendmmsg") {
		t.Errorf("receive-stamped run:\n%s", s)
	}
	r.Setups[0].Summary.Steps[0].TxKernelStamped = 1000
	s := Summary(r, "", false)
	if !strings.Contains(s, "p50 / p99 at it (µs, sink kernel RX stamp − generator kernel TX stamp)") || !strings.Contains(s, "SO_TIMESTAMPING") {
		t.Errorf("kernel-stamped run:\n%s", s)
	}
}
