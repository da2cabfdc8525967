// Command dashgen writes the Shakenline Grafana dashboard (package
// deploy/grafana) as JSON: go run ./deploy/grafana/dashgen -o FILE
// (go generate ./deploy/grafana writes deploy/grafana/shakenline.json).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/shakenline/shakenline/deploy/grafana"
)

func main() {
	out := flag.String("o", "-", "output `FILE` (- for stdout)")
	flag.Parse()
	b, err := grafana.JSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashgen:", err)
		os.Exit(1)
	}
	if *out == "-" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashgen:", err)
		os.Exit(1)
	}
}
