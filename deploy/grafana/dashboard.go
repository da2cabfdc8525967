package grafana

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the dashboard's fixed uid (links and provisioning updates keep it).
const UID = "shakenline"

// sel selects the nodes chosen in the node variable.
const sel = `instance=~"$node"`

// m is metric{instance=~"$node",extra}.
func m(name string, extra ...string) string {
	return name + "{" + strings.Join(append([]string{sel}, extra...), ",") + "}"
}

// rate is rate(metric{...}[$__rate_interval]).
func rate(name string, extra ...string) string {
	return "rate(" + m(name, extra...) + "[$__rate_interval])"
}

// rateOver is rate(metric{...}[window]) with a fixed window.
func rateOver(window, name string, extra ...string) string {
	return "rate(" + m(name, extra...) + "[" + window + "])"
}

// quantile is the q quantile of a histogram's le buckets (docs/METRICS.md,
// "Histograms"), per the by labels.
func quantile(q float64, hist, by string) string {
	return fmt.Sprintf("histogram_quantile(%g, sum by (%s, le) (%s))", q, by, rate(hist+"_le_bucket"))
}

func ds() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

func q(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend).Datasource(ds())
}

// ts is a time series panel w grid units wide, 8 high.
func ts(title, desc, unit string, w uint32, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Datasource(ds()).
		Span(w).Height(8).Min(0).FillOpacity(10).LineWidth(1).ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	ts := []dashboard.Threshold{{Value: nil, Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		ts = append(ts, dashboard.Threshold{Value: cog.ToPtr(steps[i].(float64)), Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

// st is a stat panel (last value), 4 wide, 4 high.
func st(title, desc, unit string, th *dashboard.ThresholdsConfigBuilder, targets ...*prometheus.DataqueryBuilder) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Datasource(ds()).Span(4).Height(4).
		ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeArea).Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).Thresholds(th)
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

// states is a state timeline whose values are mapped to text and colour.
func states(title, desc string, w uint32, mapping map[string]dashboard.ValueMappingResult, targets ...*prometheus.DataqueryBuilder) *statetimeline.PanelBuilder {
	p := statetimeline.NewPanelBuilder().Title(title).Description(desc).Datasource(ds()).Span(w).Height(6).
		Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: mapping}}})
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

func res(text, color string) dashboard.ValueMappingResult {
	return dashboard.ValueMappingResult{Text: cog.ToPtr(text), Color: cog.ToPtr(color)}
}

// Build assembles the dashboard.
func Build() (dashboard.Dashboard, error) {
	datasource := dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus")
	node := dashboard.NewQueryVariableBuilder("node").Label("node").
		Description("Appliances (the instance label of their /metrics target). All: the fleet.").
		Datasource(ds()).
		Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(shakenline_build_info, instance)")}).
		Definition("label_values(shakenline_build_info, instance)").
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).IncludeAll(true).AllValue(".*")

	signed := "sum(" + rate("shakenline_calls_signed_total") + ")"

	b := dashboard.NewDashboardBuilder("Shakenline").Uid(UID).
		Description("STIR/SHAKEN signing appliances: traffic and outcomes, signer chain, verification, XDP, certificate. Series: docs/METRICS.md. Alerts: deploy/prometheus.").
		Tags([]string{"shakenline", "stir-shaken"}).Refresh("30s").Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).Editable().Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(datasource).WithVariable(node).
		Link(dashboard.NewDashboardLinkBuilder("Runbooks").Type(dashboard.DashboardLinkTypeLink).
			Url("https://github.com/shakenline/shakenline/blob/main/deploy/prometheus/README.md").TargetBlank(true))

	// Fleet: the selected nodes together.
	b.WithRow(dashboard.NewRowBuilder("Fleet (selected nodes together)")).
		WithPanel(st("Signed calls/s", "shakenline_calls_signed_total, all selected nodes.", "reqps",
			thresholds("blue"), q(signed, "signed"))).
		WithPanel(st("Bypassed", "shakenline_calls_bypassed_total / (signed + bypassed), last 5 minutes. Alert at 1 % (warning) and 10 % (critical).",
			"percentunit", thresholds("green", 0.001, "orange", 0.01, "red"),
			q("sum("+rateOver("5m", "shakenline_calls_bypassed_total")+") / (sum("+rateOver("5m", "shakenline_calls_signed_total")+
				") + sum("+rateOver("5m", "shakenline_calls_bypassed_total")+"))", "bypass ratio"))).
		WithPanel(st("Verified calls/s", "shakenline_verifications_total, all verstats.", "reqps", thresholds("blue"),
			q("sum("+rate("shakenline_verifications_total")+")", "verified"))).
		WithPanel(st("Nodes up", "Appliances exporting shakenline_build_info now.", "none", thresholds("red", 1.0, "green"),
			q("count("+m("shakenline_build_info")+")", "nodes"))).
		WithPanel(st("Checks failing", "shakenline_ready == 0: /readyz checks failing, over all nodes.", "none",
			thresholds("green", 1.0, "red"), q("count("+m("shakenline_ready")+" == 0) or vector(0)", "failing"))).
		WithPanel(st("Certificate: days left", "Smallest shakenline_cert_not_after_seconds - time() of the nodes. Alerts at 14 and 3 days.",
			"d", thresholds("red", 3.0, "orange", 14.0, "green"),
			q("min("+m("shakenline_cert_not_after_seconds")+" - time()) / 86400", "days left")))

	b.WithRow(dashboard.NewRowBuilder("Traffic and outcomes")).
		WithPanel(ts("Calls/s by outcome", "Initial INVITEs: signed, forwarded with P-Identity-Bypass, forwarded unsigned (no number, already signed, malformed, policy).", "reqps", 12,
			q("sum by (instance) ("+rate("shakenline_calls_signed_total")+")", "{{instance}} signed"),
			q("sum by (instance) ("+rate("shakenline_calls_bypassed_total")+")", "{{instance}} bypassed"),
			q("sum by (instance) ("+rate("shakenline_calls_unsigned_total")+")", "{{instance}} unsigned"))).
		WithPanel(ts("Signed calls/s by attestation", "shakenline_calls_signed_total by attest, all selected nodes.", "reqps", 12,
			q("sum by (attest) ("+rate("shakenline_calls_signed_total")+")", "{{attest}}"))).
		WithPanel(ts("Bypassed calls/s by reason", "shakenline_calls_bypassed_total: timeout (no signer within sign_budget), signer-down, overload (queues full), signer-error.", "reqps", 8,
			q("sum by (instance, reason) ("+rate("shakenline_calls_bypassed_total")+")", "{{instance}} {{reason}}"))).
		WithPanel(ts("Unsigned calls/s by reason", "shakenline_calls_unsigned_total: no-orig-tn, no-dest-tn, already-signed, malformed, policy-forward.", "reqps", 8,
			q("sum by (instance, reason) ("+rate("shakenline_calls_unsigned_total")+")", "{{instance}} {{reason}}"))).
		WithPanel(ts("Bypass ratio", "shakenline_calls_bypassed_total / (signed + bypassed) per node.", "percentunit", 8,
			q("sum by (instance) ("+rate("shakenline_calls_bypassed_total")+") / (sum by (instance) ("+rate("shakenline_calls_signed_total")+
				") + sum by (instance) ("+rate("shakenline_calls_bypassed_total")+"))", "{{instance}}"))).
		WithPanel(ts("Latency added to signed calls", "shakenline_sign_added_latency_seconds: datagram read to signed datagram sent, all loops.", "s", 8,
			q(quantile(0.5, "shakenline_sign_added_latency_seconds", "instance"), "{{instance}} p50"),
			q(quantile(0.99, "shakenline_sign_added_latency_seconds", "instance"), "{{instance}} p99"))).
		WithPanel(ts("SIP messages/s", "shakenline_sip_packets_total read, shakenline_sip_forwarded_total by kind, local answers, redirects.", "pps", 8,
			q("sum by (instance) ("+rate("shakenline_sip_packets_total")+")", "{{instance}} read"),
			q("sum by (instance, kind) ("+rate("shakenline_sip_forwarded_total")+")", "{{instance}} forwarded {{kind}}"),
			q("sum by (instance) ("+rate("shakenline_sip_local_responses_total")+")", "{{instance}} answered locally"),
			q("sum by (instance) ("+rate("shakenline_sip_redirects_total")+")", "{{instance}} 302"))).
		WithPanel(ts("SIP malformed and dropped/s", "shakenline_sip_malformed_total by kind, shakenline_sip_dropped_total by reason, shakenline_udp_send_errors_total.", "pps", 8,
			q("sum by (instance, kind) ("+rate("shakenline_sip_malformed_total")+")", "{{instance}} malformed {{kind}}"),
			q("sum by (instance, reason) ("+rate("shakenline_sip_dropped_total")+")", "{{instance}} dropped {{reason}}"),
			q("sum by (instance) ("+rate("shakenline_udp_send_errors_total")+")", "{{instance}} send errors"))).
		WithPanel(ts("UDP batching", "Datagrams per sendmmsg(2) and per recvmmsg(2) call.", "none", 12,
			q("sum by (instance) ("+rate("shakenline_udp_sent_total")+") / sum by (instance) ("+rate("shakenline_udp_sendmmsg_calls_total")+")", "{{instance}} per send"),
			q("sum by (instance) ("+rate("shakenline_udp_recvmmsg_datagrams_total")+") / sum by (instance) ("+rate("shakenline_udp_recvmmsg_calls_total")+")", "{{instance}} per receive"))).
		WithPanel(ts("HTTP API requests/s", "shakenline_api_requests_total by route and code.", "reqps", 12,
			q("sum by (instance, route, code) ("+rate("shakenline_api_requests_total")+") > 0", "{{instance}} {{route}} {{code}}")))

	breaker := map[string]dashboard.ValueMappingResult{"0": res("closed", "green"), "1": res("open", "red"), "2": res("half-open", "orange")}
	b.WithRow(dashboard.NewRowBuilder("Signer chain")).
		WithPanel(states("Breaker state", "shakenline_hsm_breaker_state per signer: closed (in use), open (skipped), half-open (probing). Alert: not closed for 2 minutes.", 12, breaker,
			q("max by (instance, signer) ("+m("shakenline_hsm_breaker_state")+")", "{{instance}} {{signer}}"))).
		WithPanel(states("Signer ready", "shakenline_hsm_ready: sessions usable and not every worker stuck. Kind from shakenline_signer_info.", 12,
			map[string]dashboard.ValueMappingResult{"0": res("NOT READY", "red"), "1": res("ready", "green")},
			q("max by (instance, signer, kind) ("+m("shakenline_hsm_ready")+" * on (instance, job, signer) group_left (kind) "+m("shakenline_signer_info")+")", "{{instance}} {{signer}} ({{kind}})"))).
		WithPanel(ts("Signatures/s by signer", "shakenline_hsm_signed_total.", "ops", 8,
			q("sum by (instance, signer) ("+rate("shakenline_hsm_signed_total")+")", "{{instance}} {{signer}}"))).
		WithPanel(ts("Signer latency", "shakenline_hsm_sign_duration_seconds (queued requests; on-loop software signatures are not timed). sign_budget is 100 ms by default.", "s", 8,
			q(quantile(0.5, "shakenline_hsm_sign_duration_seconds", "instance, signer"), "{{instance}} {{signer}} p50"),
			q(quantile(0.99, "shakenline_hsm_sign_duration_seconds", "instance, signer"), "{{instance}} {{signer}} p99"))).
		WithPanel(ts("Signer failures/s", "shakenline_hsm_failures_total by reason (error, timeout, session-lost); shakenline_hsm_unsigned_total: requests the chain gave up on.", "ops", 8,
			q("sum by (instance, signer, reason) ("+rate("shakenline_hsm_failures_total")+")", "{{instance}} {{signer}} {{reason}}"),
			q("sum by (instance, reason) ("+rate("shakenline_hsm_unsigned_total")+")", "{{instance}} chain gave up: {{reason}}"))).
		WithPanel(ts("Signer sessions and queue", "shakenline_hsm_sessions (PKCS#11 sessions; software: workers) and shakenline_hsm_queue_depth.", "none", 12,
			q("max by (instance, signer) ("+m("shakenline_hsm_sessions")+")", "{{instance}} {{signer}} sessions"),
			q("max by (instance, signer) ("+m("shakenline_hsm_queue_depth")+")", "{{instance}} {{signer}} queued"))).
		WithPanel(ts("Signed on the event loop", "shakenline_calls_signed_on_loop_total / shakenline_calls_signed_total: share signed at once with a warm software key.", "percentunit", 12,
			q("sum by (instance) ("+rate("shakenline_calls_signed_on_loop_total")+") / sum by (instance) ("+rate("shakenline_calls_signed_total")+")", "{{instance}}")))

	b.WithRow(dashboard.NewRowBuilder("Verification")).
		WithPanel(ts("Verified calls/s by verstat", "shakenline_verifications_total (SIP), plus verifications answered with an error code (verify-reject) and skipped ones.", "reqps", 8,
			q("sum by (instance, verstat) ("+rate("shakenline_verifications_total")+")", "{{instance}} {{verstat}}"),
			q("sum by (instance) ("+rate("shakenline_verifications_rejected_total")+")", "{{instance}} rejected"),
			q("sum by (instance, reason) ("+rate("shakenline_verifications_skipped_total")+")", "{{instance}} skipped {{reason}}"))).
		WithPanel(ts("Verification results by code", "shakenline_verify_results_total (SIP and HTTP): 403 stale, 436 bad x5u, 437 unsupported, 438 invalid, 428 no Identity.", "reqps", 8,
			q("sum by (verstat, code) ("+rate("shakenline_verify_results_total")+")", "{{verstat}} {{code}}"))).
		WithPanel(ts("Verification failure ratio", "TN-Validation-Failed / all verifications per node. Alert on a jump above 5 % and twice the 1-hour average.", "percentunit", 8,
			q("sum by (instance) ("+rate("shakenline_verifications_total", `verstat="TN-Validation-Failed"`)+") / sum by (instance) ("+rate("shakenline_verifications_total")+")", "{{instance}}"))).
		WithPanel(ts("x5u certificate cache", "shakenline_verify_x5u_cache_{hits,misses}_total, fetch failures and failures answered from the failure cache.", "ops", 12,
			q("sum by (instance) ("+rate("shakenline_verify_x5u_cache_hits_total")+")", "{{instance}} hits"),
			q("sum by (instance) ("+rate("shakenline_verify_x5u_cache_misses_total")+")", "{{instance}} misses (fetches)"),
			q("sum by (instance) ("+rate("shakenline_verify_x5u_fetch_failures_total")+")", "{{instance}} fetch failures"),
			q("sum by (instance) ("+rate("shakenline_verify_x5u_failure_cache_hits_total")+")", "{{instance}} failed from cache"))).
		WithPanel(ts("CRL", "shakenline_verify_crl_fetches_total, fetch failures, and verifications passed without a usable CRL (fail-open).", "ops", 12,
			q("sum by (instance) ("+rate("shakenline_verify_crl_fetches_total")+")", "{{instance}} fetches"),
			q("sum by (instance) ("+rate("shakenline_verify_crl_fetch_failures_total")+")", "{{instance}} fetch failures"),
			q("sum by (instance) ("+rate("shakenline_verify_crl_fail_open_total")+")", "{{instance}} passed without CRL")))

	xdpState := map[string]dashboard.ValueMappingResult{"0": res("DETACHED / FAIL-OPEN", "red"), "1": res("attached, signing", "green")}
	b.WithRow(dashboard.NewRowBuilder("XDP (inline mode)")).
		WithPanel(states("XDP steering", "1 when shakenline_xdp_attached is 1 and shakenline_xdp_fail_open is 0: INVITEs arriving on the interface are signed.", 8, xdpState,
			q("min by (instance, iface) ("+m("shakenline_xdp_attached")+") * on (instance, iface) (1 - max by (instance, iface) ("+m("shakenline_xdp_fail_open")+"))", "{{instance}} {{iface}}"))).
		WithPanel(ts("XDP packets/s by action", "shakenline_xdp_packets_total: steered (INVITEs to the loops), forwarded at XDP, passed to the kernel, dropped.", "pps", 8,
			q("sum by (instance, iface, action) ("+rate("shakenline_xdp_packets_total")+")", "{{instance}} {{iface}} {{action}}"))).
		WithPanel(ts("INVITEs passed unsigned by XDP", "shakenline_xdp_invite_unsteered_total: heartbeat_stale and disabled are fail-open; fragment: fragmented INVITEs.", "pps", 8,
			q("sum by (instance, iface, reason) ("+rate("shakenline_xdp_invite_unsteered_total")+")", "{{instance}} {{iface}} {{reason}}")))

	b.WithRow(dashboard.NewRowBuilder("Certificate, readiness, configuration")).
		WithPanel(ts("Certificate: days left", "shakenline_cert_not_after_seconds - time() per node (the certificate in use; follows renewals).", "d", 8,
			q("("+m("shakenline_cert_not_after_seconds")+" - time()) / 86400", "{{instance}}"))).
		WithPanel(states("Readiness checks", "shakenline_ready per /readyz check.", 8,
			map[string]dashboard.ValueMappingResult{"0": res("FAILING", "red"), "1": res("ok", "green")},
			q("max by (instance, check) ("+m("shakenline_ready")+")", "{{instance}} {{check}}"))).
		WithPanel(ts("Reloads and restarts", "shakenline_api_reloads_total by result (SIGHUP and POST /admin/reload) and restarts (process_start_time_seconds changes), per hour.", "none", 8,
			q("sum by (instance, result) (increase("+m("shakenline_api_reloads_total")+"[1h]))", "{{instance}} reload {{result}}"),
			q("changes("+m("process_start_time_seconds")+"[1h])", "{{instance}} restarts"))).
		WithPanel(ts("Build", "shakenline_build_info: version and mode per node.", "none", 24,
			q("max by (instance, version, mode) ("+m("shakenline_build_info")+")", "{{instance}} {{version}} {{mode}}")))

	b.WithRow(dashboard.NewRowBuilder("API, audit, process")).
		WithPanel(ts("API latency p99 by route", "shakenline_api_request_duration_seconds.", "s", 8,
			q(quantile(0.99, "shakenline_api_request_duration_seconds", "instance, route"), "{{instance}} {{route}}"))).
		WithPanel(ts("Audit trail", "shakenline_audit_records_total written, dropped (queue full), write errors, rotations.", "ops", 8,
			q("sum by (instance) ("+rate("shakenline_audit_records_total")+")", "{{instance}} records"),
			q("sum by (instance) ("+rate("shakenline_audit_dropped_total")+")", "{{instance}} dropped"),
			q("sum by (instance) ("+rate("shakenline_audit_write_errors_total")+")", "{{instance}} write errors"),
			q("sum by (instance) ("+rate("shakenline_audit_rotations_total")+")", "{{instance}} rotations"))).
		WithPanel(ts("CPU", "process_cpu_seconds_total (1 = one core busy) and Go GC CPU.", "percentunit", 8,
			q("sum by (instance) ("+rate("process_cpu_seconds_total")+")", "{{instance}} process"),
			q("sum by (instance) ("+rate("go_gc_cpu_seconds_total")+")", "{{instance}} GC"))).
		WithPanel(ts("Memory", "process_resident_memory_bytes and Go heap in use.", "bytes", 12,
			q("max by (instance) ("+m("process_resident_memory_bytes")+")", "{{instance}} RSS"),
			q("max by (instance) ("+m("go_memstats_heap_inuse_bytes")+")", "{{instance}} heap"))).
		WithPanel(ts("Goroutines and threads", "go_goroutines, process_num_threads.", "none", 12,
			q("max by (instance) ("+m("go_goroutines")+")", "{{instance}} goroutines"),
			q("max by (instance) ("+m("process_num_threads")+")", "{{instance}} threads")))

	d, err := b.Build()
	if err != nil {
		return d, err
	}
	// Stable panel ids and query refIds (A, B, ...), as Grafana would
	// assign them on first save.
	id := uint32(0)
	for _, p := range d.Panels {
		id++
		switch {
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
			for i, t := range p.Panel.Targets {
				if pq, ok := t.(prometheus.Dataquery); ok {
					pq.RefId = cog.ToPtr(string(rune('A' + i)))
					p.Panel.Targets[i] = pq
				}
			}
		}
	}
	return d, nil
}

// JSON is the dashboard as committed in shakenline.json.
func JSON() ([]byte, error) {
	d, err := Build()
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
