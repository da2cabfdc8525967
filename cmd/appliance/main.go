// Command appliance is the Shakenline STIR/SHAKEN signing appliance: one
// binary with the subcommands serve, lab-pki, lab-sti, sign, verify and
// version (docs/CLI.md). Exit codes: 0 ok, 1 a verification that did not
// pass, 2 usage or configuration error with a one-line reason on stderr.
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
	"time"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

// env is what a subcommand may touch, so tests can run subcommands in
// process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	now            func() time.Time
	signals        <-chan os.Signal // SIGHUP for reload; nil in tests that do not send one
}

// errHelp is returned when a command printed its help on request.
var errHelp = flag.ErrHelp

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	os.Exit(run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, now: time.Now, signals: hup}))
}

const usage = `usage: appliance <command> [flags]

commands:
  serve     run the appliance (proxy, redirect or inline mode)
  lab-pki   make a lab PKI: root, intermediate, provider certificate with TNAuthList
  lab-sti   run a lab STI-PA (SPC token API) and STI-CA (ACME, TNAuthList, tkauth-01, CRL)
  sign      read claims (JSON) or a SIP INVITE on stdin, print an Identity header value
  verify    read an Identity header and From/To (or an INVITE) on stdin, print the verstat as JSON
  version   print the version

'appliance <command> --help' lists a command's flags.
`

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], e)
	case "lab-pki":
		err = cmdLabPKI(args[1:], e)
	case "lab-sti":
		err = cmdLabSTI(ctx, args[1:], e)
	case "sign":
		err = cmdSign(ctx, args[1:], e)
	case "verify":
		var passed bool
		passed, err = cmdVerify(ctx, args[1:], e)
		if err == nil && !passed {
			return 1
		}
	case "version", "--version", "-v":
		fmt.Fprintln(e.stdout, "shakenline appliance", version)
	case "help", "--help", "-h":
		fmt.Fprint(e.stdout, usage)
	default:
		fmt.Fprintf(e.stderr, "appliance: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	default:
		fmt.Fprintf(e.stderr, "appliance %s: %v\n", args[0], err)
		return 2
	}
}

// parseFlags parses args with a one-line error on bad input (docs/CLI.md:
// exit 2 with a one-line reason) and the full flag list only on --help.
func parseFlags(fs *flag.FlagSet, args []string, e env) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		fs.SetOutput(e.stderr)
	}
	return err
}

// setUsage gives fs the project's usage text: a synopsis, then printFlags.
func setUsage(fs *flag.FlagSet, synopsis string) {
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: "+synopsis)
		printFlags(fs, fs.Output())
	}
}

// printFlags lists the flags the way docs/CLI.md writes them (--name
// VALUE); Go accepts one dash or two.
func printFlags(fs *flag.FlagSet, w io.Writer) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%-34s %s\n", line, usage)
	})
}
