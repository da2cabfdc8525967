// Package grafana generates the Grafana dashboard for Shakenline
// appliances as code (github.com/grafana/grafana-foundation-sdk/go):
// Build assembles it, JSON renders shakenline.json, which is committed so
// operators can import or provision it without Go. Regenerate with
//
//	go generate ./deploy/grafana
//
// TestJSONCurrent fails when shakenline.json is stale.
//
// The dashboard has a datasource variable (any Prometheus) and a node
// variable (the instance labels of shakenline_build_info, multi-select,
// All = the fleet). Rows: fleet totals; traffic and outcomes; signer chain
// (breaker, readiness, rate, latency, failures, sessions); verification;
// XDP (inline mode); certificate, readiness and configuration; API, audit
// and process. Every query reads series from docs/METRICS.md only (no
// recording rules), so it works before the rules are installed; latency
// quantiles use the <histogram>_le_bucket series. cmd/appliance's
// TestPrometheusLive runs every query against a real Prometheus scraping
// appliances under SIPp load and requires data from each.
package grafana

//go:generate go run ./dashgen -o shakenline.json
