// Command shakebench drives the benchmark load generator (package
// bench/loadgen): it sends unique INVITEs at a rate or a rate ramp to a SIP
// proxy (or straight to its own sink) and reports loss and added latency.
//
//	shakebench run  --target 127.0.0.1:5060 --sink 127.0.0.1:5070 --rate 2000 --duration 10s
//	shakebench step --target 127.0.0.1:5060 --sink 127.0.0.1:5070 --start 1000 --factor 1.25
//	shakebench sink --listen 127.0.0.1:5070 --duration 60s
//	shakebench step --transport tcp --sockets 8 --target 127.0.0.1:5060 --sink 127.0.0.1:5070
//	shakebench step --transport tls --tls-ca ca.pem --sink-tls-cert s.pem --sink-tls-key s.key ...
//
// Without --target the generator sends straight to its sink (self-test: the
// generator's own ceiling). Exit codes: 0 ok, 1 run failure, 2 usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shakenline/shakenline/bench/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: shakebench run|step|sink [flags]   (shakebench CMD -h for flags)`

// errUsage marks a command-line error (exit code 2).
var errUsage = errors.New("shakebench: usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run", "step":
		err = runGen(ctx, args[0], args[1:], stdout, stderr)
	case "sink":
		err = runSink(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage), errors.Is(err, loadgen.ErrConfig), errors.Is(err, loadgen.ErrNumber), errors.Is(err, loadgen.ErrKey):
		fmt.Fprintln(stderr, err)
		return 2
	default:
		fmt.Fprintln(stderr, err)
		return 1
	}
}

// sinkFlags are shared by every command that runs a sink.
type sinkFlags struct {
	provisional bool
	verifyKey   string
	verifyEvery int
	readers     int
	transport   string
	tlsCert     string
	tlsKey      string
}

func (s *sinkFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&s.provisional, "provisional", false, "sink answers INVITE with 100 and 180 before 200")
	fs.StringVar(&s.verifyKey, "verify-key", "", "PEM public key, certificate or private key: sink verifies a sample of Identity headers")
	fs.IntVar(&s.verifyEvery, "verify-every", 100, "verify one in N INVITEs carrying Identity")
	fs.IntVar(&s.readers, "sink-readers", 1, "sink SO_REUSEPORT sockets")
	fs.StringVar(&s.transport, "transport", "udp", "udp, tcp or tls: the generator's connections (--sockets of them) and the sink's")
	fs.StringVar(&s.tlsCert, "sink-tls-cert", "", "tls: the sink's certificate, PEM")
	fs.StringVar(&s.tlsKey, "sink-tls-key", "", "tls: the sink's key, PEM")
}

func (s *sinkFlags) start(listen string) (*loadgen.Sink, error) {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return nil, fmt.Errorf("%w: sink address %q: %w", errUsage, listen, err)
	}
	cfg := loadgen.SinkConfig{Listen: ap, Provisional: s.provisional, VerifyEvery: s.verifyEvery, Readers: s.readers, Transport: s.transport}
	if s.transport == "tls" {
		c, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("%w: --sink-tls-cert, --sink-tls-key: %w", errUsage, err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	}
	if s.verifyKey != "" {
		if cfg.VerifyKey, err = loadgen.LoadPublicKey(s.verifyKey); err != nil {
			return nil, err
		}
	}
	return loadgen.NewSink(cfg)
}

func runGen(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	loadgen.EnableFinePacing()
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sf               sinkFlags
		target, sinkAddr = fs.String("target", "", "where INVITEs go (the proxy); default: the sink itself"), fs.String("sink", "127.0.0.1:5070", "in-process sink (next hop) address; empty for none")
		local            = fs.String("local", "", "local address for the generator sockets (default loopback)")
		sockets          = fs.Int("sockets", 16, "UDP source sockets, or TCP/TLS connections (--transport)")
		tlsCA            = fs.String("tls-ca", "", "tls: trust anchors (PEM) for the target's certificate")
		workers          = fs.Int("workers", 1, "sending goroutines")
		batch            = fs.Int("batch", 32, "INVITEs per sendmmsg")
		fullCall         = fs.Bool("full-call", false, "send ACK and BYE for each answered INVITE")
		fromNums, toNums = fs.String("from", "", "calling numbers: comma list or @file (one per line), +1NXXNXXXXXX"), fs.String("to", "", "called numbers: comma list or @file")
		drain            = fs.Duration("drain", time.Second, "wait after the last send for answers")
		maxCalls         = fs.Int("max-calls", 10_000_000, "call bound for an open-loop run")
		asJSON           = fs.Bool("json", false, "print JSON lines on stdout (the human line goes to stderr)")
		rate             = fs.Float64("rate", 1000, "run: calls/s (0 = open loop)")
		duration         = fs.Duration("duration", 10*time.Second, "run: sending time")
		count            = fs.Int("count", 0, "run: stop after this many calls (0 = rate x duration)")
		start            = fs.Float64("start", 1000, "step: first rate")
		factor           = fs.Float64("factor", 1.25, "step: rate multiplier per step")
		increment        = fs.Float64("increment", 0, "step: rate added per step (overrides factor)")
		stepDur          = fs.Duration("step-duration", 5*time.Second, "step: sending time per step")
		maxRate          = fs.Float64("max-rate", 1_000_000, "step: highest rate tried")
		lossPct          = fs.Float64("loss", 0.1, "step: loss threshold in percent")
		maxSteps         = fs.Int("max-steps", 40, "step: most steps")
		userSendTime     = fs.Bool("user-send-time", false, "time INVITEs from the wall clock before sendmmsg only, without kernel transmit timestamps")
	)
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	cfg := loadgen.Config{Sockets: *sockets, Workers: *workers, Batch: *batch, FullCall: *fullCall, Drain: *drain, MaxCalls: *maxCalls,
		UserSendTime: *userSendTime, Transport: sf.transport}
	var err error
	if sf.transport == "tls" {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if *tlsCA != "" {
			b, err := os.ReadFile(*tlsCA)
			if err != nil {
				return fmt.Errorf("%w: --tls-ca: %w", errUsage, err)
			}
			cfg.TLS.RootCAs = x509.NewCertPool()
			if !cfg.TLS.RootCAs.AppendCertsFromPEM(b) {
				return fmt.Errorf("%w: --tls-ca: no PEM certificate", errUsage)
			}
		}
	}
	if cfg.FromNumbers, err = numbers(*fromNums); err != nil {
		return err
	}
	if cfg.ToNumbers, err = numbers(*toNums); err != nil {
		return err
	}
	if *local != "" {
		if cfg.Local, err = netip.ParseAddr(*local); err != nil {
			return fmt.Errorf("%w: --local: %w", errUsage, err)
		}
	}
	if *sinkAddr != "" {
		sink, err := sf.start(*sinkAddr)
		if err != nil {
			return err
		}
		defer sink.Close()
		cfg.Sink = sink
		cfg.Target = sink.Addr()
	}
	if *target != "" {
		if cfg.Target, err = netip.ParseAddrPort(*target); err != nil {
			return fmt.Errorf("%w: --target: %w", errUsage, err)
		}
	}
	if !cfg.Target.IsValid() {
		return fmt.Errorf("%w: need --target or --sink", errUsage)
	}
	g, err := loadgen.NewGenerator(cfg)
	if err != nil {
		return err
	}
	defer g.Close()

	emit := func(v any, human string) {
		if *asJSON {
			b, _ := json.Marshal(v)
			fmt.Fprintf(stdout, "%s\n", b)
			fmt.Fprintln(stderr, human)
			return
		}
		fmt.Fprintln(stdout, human)
	}
	if cmd == "run" {
		res, err := g.Run(ctx, loadgen.Load{Rate: *rate, Duration: *duration, Count: *count})
		emit(res, res.String())
		return err
	}
	sum, err := g.Step(ctx, loadgen.StepConfig{
		Start: *start, Factor: *factor, Increment: *increment, StepDuration: *stepDur,
		MaxRate: *maxRate, LossPct: *lossPct, MaxSteps: *maxSteps,
	}, func(r loadgen.Result) {
		emit(struct {
			Step loadgen.Result `json:"step"`
		}{r}, "step: "+r.String())
	})
	human := fmt.Sprintf("max clean rate %.0f/s (stop: %s)", sum.MaxCleanRate, sum.Stop)
	if sum.Best != nil {
		human += fmt.Sprintf(" p50 %.1fus p99 %.1fus", sum.Best.Latency.P50, sum.Best.Latency.P99)
	}
	emit(struct {
		Summary loadgen.StepSummary `json:"summary"`
	}{sum}, human)
	return err
}

func runSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf sinkFlags
	listen := fs.String("listen", "127.0.0.1:5070", "UDP address to answer on")
	duration := fs.Duration("duration", 0, "stop after this long (0 = until SIGINT/SIGTERM)")
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	sink, err := sf.start(*listen)
	if err != nil {
		return err
	}
	defer sink.Close()
	fmt.Fprintf(stderr, "shakebench: sink on %s\n", sink.Addr())
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	<-ctx.Done()
	b, _ := json.Marshal(sink.Stats())
	fmt.Fprintf(stdout, "%s\n", b)
	return nil
}

// numbers reads a comma list or an @file of numbers.
func numbers(spec string) ([]string, error) {
	if spec == "" {
		return nil, nil
	}
	if strings.HasPrefix(spec, "@") {
		b, err := os.ReadFile(spec[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: numbers: %w", errUsage, err)
		}
		return strings.Fields(string(b)), nil
	}
	return strings.Split(spec, ","), nil
}
