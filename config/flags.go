package config

import (
	"errors"
	"flag"
	"reflect"
	"strconv"
	"strings"
)

// flagKeys is the one table of the command-line flags that override the
// YAML file (`appliance serve`, docs/CLI.md): each is a YAML key of Config,
// and its flag is that key with '-' for '_'. The rest (the Go field, its
// type, its default) comes from Config's yaml tags and Default(), so a
// flag and its key cannot drift apart; a key named here that Config lacks
// panics in AddFlags (and fails TestFlagsAreKeys).
var flagKeys = []struct{ key, usage string }{
	{"mode", "proxy|redirect|inline"},
	{"sip", "SIP listen `ADDR:PORT` (UDP and TCP; proxy and redirect modes)"},
	{"sip_tls", "SIP over TLS listen `ADDR:PORT` (with --tls-cert and --tls-key)"},
	{"tls_cert", "the SIP TLS certificate, PEM `FILE` (not the STI certificate)"},
	{"tls_key", "the SIP TLS certificate's key, PEM `FILE`"},
	{"tls_ca", "trust anchors for TLS peers, PEM `FILE` (next hops always; clients with tls_client_auth)"},
	{"advertise", "`ADDR:PORT` written in our Via when --sip is 0.0.0.0 or ::"},
	{"next_hop", "where proxy mode forwards requests: `ADDR:PORT` (UDP) or sip:ADDR:PORT;transport=udp|tcp|tls"},
	{"key", "signing key: PEM `FILE` (PKCS#8 or SEC 1, P-256)"},
	{"pkcs11", "signing key in an HSM: RFC 7512 pkcs11: `URI` (module-path, token, object, pin-source=file:...)"},
	{"cert", "the provider's certificate, PEM `FILE` (chain allowed)"},
	{"x5u", "`URL` placed in info= and the x5u claim"},
	{"attest", "default attestation `A|B|C` when no policy rule matches"},
	{"default_country", "ISO 3166 `CC` for national numbers"},
	{"api", "HTTP API + /metrics + /healthz `ADDR:PORT`"},
	{"iface", "inline mode: interfaces to attach XDP to, `NAME[,NAME]`"},
	{"trust", "named trust stores for verification, `NAME=FILE[,NAME=FILE]`"},
	{"api_token_file", "bearer tokens accepted by the API, one per line, `FILE`"},
	{"lab", "lab only: allow http x5u and loopback/private x5u targets"},
	{"loops", "event loops (default: one per core)"},
}

// flagName is the command-line flag of a YAML key: the key with '-' for
// '_'.
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// Flags are the flags AddFlags defined on one FlagSet.
type Flags struct {
	fs    *flag.FlagSet
	field map[string]int // flag name -> index of its Config field
}

// AddFlags defines on fs a flag for every key of flagKeys, with the
// value of Default() as its default. After fs.Parse, Apply copies the
// flags that were given into a Config.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, field: map[string]int{}}
	def := reflect.ValueOf(Default())
	for _, k := range flagKeys {
		i, ok := fieldOf(k.key)
		if !ok {
			panic("config: flag for unknown key " + k.key)
		}
		name, v := flagName(k.key), def.Field(i)
		switch v.Kind() {
		case reflect.Bool:
			fs.Bool(name, v.Bool(), k.usage)
		case reflect.Int:
			fs.Int(name, int(v.Int()), k.usage)
		case reflect.String:
			fs.String(name, v.String(), k.usage)
		case reflect.Slice, reflect.Map: // given as NAME[,NAME] or NAME=FILE[,NAME=FILE]
			fs.String(name, "", k.usage)
		default:
			panic("config: no flag for key " + k.key + " of kind " + v.Kind().String())
		}
		f.field[name] = i
	}
	return f
}

// Apply sets into c the keys whose flags were given on the command line,
// so that a flag overrides the file. A list key (iface) is split at
// commas, trust is parsed by ParseTrust, default_country is upper-cased.
// --key and --pkcs11 each replace the file's whole signer chain (key,
// pkcs11 and signers), and may not both be given.
func (f *Flags) Apply(c *Config) error {
	cv := reflect.ValueOf(c).Elem()
	var err error
	f.fs.Visit(func(fl *flag.Flag) {
		i, ok := f.field[fl.Name]
		if !ok || err != nil {
			return
		}
		v, s := cv.Field(i), fl.Value.String()
		switch v.Kind() {
		case reflect.Bool:
			b, _ := strconv.ParseBool(s) // the flag package parsed it
			v.SetBool(b)
		case reflect.Int:
			n, _ := strconv.Atoi(s)
			v.SetInt(int64(n))
		case reflect.String:
			v.SetString(s)
		case reflect.Slice:
			v.Set(reflect.ValueOf(strings.Split(s, ",")))
		case reflect.Map:
			var m map[string]string
			if m, err = ParseTrust(s); err == nil {
				v.Set(reflect.ValueOf(m))
			}
		}
		switch fl.Name {
		case "key":
			c.PKCS11, c.Signers = "", nil
		case "pkcs11":
			c.Key, c.Signers = "", nil
		case "default-country":
			c.DefaultCountry = strings.ToUpper(c.DefaultCountry)
		}
	})
	if err != nil {
		return err
	}
	if f.value("key") != "" && f.value("pkcs11") != "" {
		return errors.New("give --key or --pkcs11, not both")
	}
	return nil
}

// value is the flag's value as given ("" when it is not defined).
func (f *Flags) value(name string) string {
	if fl := f.fs.Lookup(name); fl != nil {
		return fl.Value.String()
	}
	return ""
}

// fieldOf returns the index of Config's field with the yaml key.
func fieldOf(key string) (int, bool) {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == key {
			return i, true
		}
	}
	return 0, false
}
