// Package sipp holds the SIPp scenarios of the benchmark (uac.xml,
// uac_invite_only.xml, uas.xml, numbers.csv), of the Date rules
// (uac_no_date.xml, uac_date.xml, uac_stale_date.xml) and of div and Rich
// Call Data (uac_forwarded*.xml, uac_large_sdp.xml); its tests run them
// with the real sipp binary (Debian package sip-tester). TraceInvites and
// HeaderValues read the INVITEs of a SIPp message log (-trace_msg) for the
// tests here and in cmd/appliance.
package sipp
