package main

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// execEnv names the environment variable that turns the test binary into
// the appliance: tests that must run it in another network namespace
// re-execute themselves (ip netns exec ... os.Args[0]) with the appliance's
// arguments as a JSON list.
const execEnv = "SHAKENLINE_EXEC_APPLIANCE"

func TestMain(m *testing.M) {
	if a := os.Getenv(execEnv); a != "" {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		os.Exit(run(ctx, args, env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, now: time.Now, signals: hup}))
	}
	os.Exit(m.Run())
}
