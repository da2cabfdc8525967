// Package config owns the appliance's configuration: the YAML file that may
// set everything (docs/CONFIG.md), the command-line flags of `appliance
// serve` that override it (docs/CLI.md; flags.go: one table names the keys
// that have a flag, and each flag takes its name, type and default from its
// key), defaults, and validation. A Config is a plain value; the
// caller builds the running objects from it, and a reload builds a new one
// and swaps only what validated. The acme: block (acme.go) is documented in
// docs/KEYS.md, "Certificates through ACME".
package config
