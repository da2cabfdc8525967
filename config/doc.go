// Package config owns the appliance's configuration: the YAML file that may
// set everything (docs/CONFIG.md), the command-line flags of docs/CLI.md
// that override it, defaults, and validation. A Config is a plain value; the
// caller builds the running objects from it, and a reload builds a new one
// and swaps only what validated.
package config
