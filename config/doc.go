// Package config owns the appliance's configuration: the YAML file that may
// set everything, the command-line flags of design.md section 2 that
// override it, defaults, and validation. A Config is a plain value; the
// caller builds the running objects from it, and a reload builds a new one
// and swaps only what validated. The acme: block (acme.go) is documented in
// docs/KEYS.md, "Certificates through ACME".
package config
