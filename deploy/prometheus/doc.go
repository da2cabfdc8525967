// Package prometheus holds the Prometheus rules for the appliance
// (shakenline-rules.yml: recording rules; shakenline-alerts.yml: alerts
// with runbook text) and their promtool unit tests (tests/). The Go code is
// only the test harness: TestPromtool runs `promtool check rules` and
// `promtool test rules` (Debian package prometheus), TestEveryAlertTested
// checks that every alert has a firing and a quiet test case, a severity,
// a runbook, and a description naming its metric and threshold, and that
// every series the rules read is listed in docs/METRICS.md. README.md is
// the operator's guide. The rules are exercised against a live appliance
// by cmd/appliance's TestPrometheusLive.
package prometheus
