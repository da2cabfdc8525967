// Command interop runs the global STIR/SHAKEN interoperability proof of
// concept (package bench/interop) and writes its report. Exit status: 0 when
// every call ended as expected, 1 when some did not, 2 when the lab could
// not be run (usage, missing prerequisite, setup failure).
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

	"github.com/shakenline/shakenline/bench/interop"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("interop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	appliance := fs.String("appliance", "bin/appliance", "appliance `BINARY`")
	out := fs.String("out", "bench/interop/results", "results `DIR` (report.md, report.html, results.json, calls.csv, latency.png)")
	work := fs.String("work", "", "work `DIR` for certificates, configs and logs (default: a new temporary directory)")
	conc := fs.Int("concurrency", 8, "calls in flight")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := interop.Run(ctx, interop.Config{Appliance: *appliance, WorkDir: *work, Concurrency: *conc, Log: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "interop: %v\n", err)
		if errors.Is(err, interop.ErrPrereq) {
			fmt.Fprintln(stderr, "interop: run as root on Debian with iproute2, kamailio and kamailio-secsipid-modules (make deps)")
		}
		return 2
	}
	files, err := interop.WriteReport(*out, res)
	if err != nil {
		fmt.Fprintf(stderr, "interop: report: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, interop.Headline(res))
	for _, f := range files {
		fmt.Fprintf(stdout, "  %s\n", f)
	}
	for _, c := range res.Counters {
		if !c.Pass {
			fmt.Fprintf(stdout, "  FAIL counter %s %s: want %d, got %d\n", c.Carrier, c.Result, c.Want, c.Got)
		}
	}
	if res.Failed() > 0 || res.CountersFailed() > 0 {
		for _, c := range res.Calls {
			if !c.Pass {
				fmt.Fprintf(stdout, "  FAIL %s\n", interop.Describe(c))
			}
		}
		return 1
	}
	return 0
}
