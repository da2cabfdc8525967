// Command shakecompare runs the side-by-side benchmark behind `make bench`
// (package bench/compare; bench/run.sh builds it as bin/shakecompare) and
// writes its report.
//
//	shakecompare run    --appliance bin/appliance --out DIR [--quick] [--latest FILE] [--history FILE]
//	shakecompare report --out DIR [--latest FILE] [--history FILE]
//	shakecompare stalls [--seconds N]
//
// stalls is also how a run measures the system under test's CPU: it starts
// this binary again under taskset. Exit codes: 0 ok, 1 run or report
// failure, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/shakenline/shakenline/bench/compare"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = "usage: shakecompare run --appliance BIN --out DIR [--quick] [--latest FILE] [--history FILE]\n" +
	"       shakecompare report --out DIR [--latest FILE] [--history FILE]\n" +
	"       shakecompare stalls [--seconds N]   (run under taskset: the gaps one CPU shows a clock-reading thread)"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("appliance", "bin/appliance", "appliance binary")
	out := fs.String("out", "", "results directory (required)")
	quick := fs.Bool("quick", false, "short run (QUICK=1)")
	latest := fs.String("latest", "", "also write the report here, detached from the raw data (bench/results/latest.md)")
	history := fs.String("history", "", "add the run's row to this history table (bench/results/history.md)")
	only := fs.String("only", "", "run: only this setup (debugging)")
	seconds := fs.Float64("seconds", 3, "stalls: how long to measure")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if args[0] == "stalls" {
		if err := compare.PrintStalls(*seconds, stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		return 0
	}
	if *out == "" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = compare.RunAll(ctx, *bin, *out, *quick, *only, stderr)
	case "report":
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if err == nil {
		err = compare.Report(*out, *latest, *history)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
