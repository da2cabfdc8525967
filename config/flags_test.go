package config

import (
	"flag"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/rcd"
)

func parseFlags(t *testing.T, args ...string) *Flags {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFlagsOverrideFile: a flag that is given overrides its key, one that
// is not leaves the file's value, each as its type wants.
func TestFlagsOverrideFile(t *testing.T) {
	c, err := Load(write(t, `
mode: redirect
sip: 127.0.0.1:5070
pkcs11: "pkcs11:token=a"
signers: [{name: a, key: /a.pem}]
iface: [eth9]
lab: false
`))
	if err != nil {
		t.Fatal(err)
	}
	f := parseFlags(t, "--sip", "198.18.0.1:5060", "--key", "/k.pem", "--iface", "eth0,eth1", "--trust", "us=/us.pem,fr=/fr.pem",
		"--default-country", "fr", "--lab", "--loops", "3", "--next-hop=198.18.0.2:5060", "--api-token-file", "/t")
	if err := f.Apply(&c); err != nil {
		t.Fatal(err)
	}
	want := c
	want.Mode = "redirect"
	want.SIP, want.NextHop, want.APITokenFile = "198.18.0.1:5060", "198.18.0.2:5060", "/t"
	want.Key, want.PKCS11, want.Signers = "/k.pem", "", nil // --key replaces the chain
	want.Ifaces = []string{"eth0", "eth1"}
	want.Trust = map[string]string{"us": "/us.pem", "fr": "/fr.pem"}
	want.DefaultCountry, want.Lab, want.Loops = "FR", true, 3
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}

	c = Default()
	c.Key, c.Signers = "/k.pem", []Signer{{Name: "a", Key: "/a.pem"}}
	if err := parseFlags(t, "--pkcs11", "pkcs11:token=b").Apply(&c); err != nil || c.Key != "" || c.Signers != nil || c.PKCS11 != "pkcs11:token=b" {
		t.Fatalf("--pkcs11 does not replace the chain: %v %+v", err, c)
	}
	if err := parseFlags(t, "--pkcs11", "pkcs11:token=b", "--key", "/k.pem").Apply(&c); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("--key with --pkcs11: %v", err)
	}
	if err := parseFlags(t, "--trust", "us").Apply(&c); err == nil || !strings.Contains(err.Error(), "NAME=FILE") {
		t.Fatalf("bad --trust: %v", err)
	}
	c = Default()
	if err := parseFlags(t).Apply(&c); err != nil || !reflect.DeepEqual(c, Default()) {
		t.Fatalf("no flags changed the config: %v %+v", err, c)
	}
}

// Every flag is a key of Config, and shows Default()'s value as its
// default.
func TestFlagsAreKeys(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	AddFlags(fs)
	def := reflect.ValueOf(Default())
	for _, k := range flagKeys {
		i, ok := fieldOf(k.key)
		if !ok {
			t.Fatalf("flag for %q, which is no key of Config", k.key)
		}
		var want string
		switch v := def.Field(i); v.Kind() {
		case reflect.Bool:
			want = strconv.FormatBool(v.Bool())
		case reflect.Int:
			want = strconv.FormatInt(v.Int(), 10)
		case reflect.String:
			want = v.String()
		}
		if fl := fs.Lookup(flagName(k.key)); fl == nil || fl.DefValue != want {
			t.Errorf("--%s: %+v, want default %q", flagName(k.key), fl, want)
		}
	}
}

// The docs name every key and every flag, and a key's flag where it has
// one: docs/CONFIG.md has a row per top-level key, docs/CLI.md a row per
// flag of serve.
func TestDocsNameEveryKeyAndFlag(t *testing.T) {
	cfgDoc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	cliDoc, err := os.ReadFile("../docs/CLI.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // key -> flag column
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\| (`--[a-z0-9-]+`)? *\\|").FindAllSubmatch(cfgDoc, -1) {
		rows[string(m[1])] = string(m[2])
	}
	hasFlag := map[string]bool{}
	for _, k := range flagKeys {
		hasFlag[k.key] = true
	}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		key, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		col, ok := rows[key]
		switch {
		case !ok:
			t.Errorf("docs/CONFIG.md has no row for key %q", key)
		case hasFlag[key] && col != "`--"+flagName(key)+"`":
			t.Errorf("docs/CONFIG.md: key %q shows flag %q, want `--%s`", key, col, flagName(key))
		case !hasFlag[key] && col != "":
			t.Errorf("docs/CONFIG.md: key %q shows flag %q, but it has none", key, col)
		}
		if hasFlag[key] && !strings.Contains(string(cliDoc), "| `--"+flagName(key)+" ") && !strings.Contains(string(cliDoc), "| `--"+flagName(key)+"`") {
			t.Errorf("docs/CLI.md has no row for --%s", flagName(key))
		}
	}
	// The policy's rule keys, and those of a rule's rcd, have rows too.
	for prefix, typ := range map[string]reflect.Type{"rules[].": reflect.TypeFor[policy.RuleConfig](), "rules[].rcd.": reflect.TypeFor[rcd.Config]()} {
		for i := range typ.NumField() {
			key, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			if !strings.Contains(string(cfgDoc), "| `"+prefix+key+"` |") {
				t.Errorf("docs/CONFIG.md has no row for the policy key %s%s", prefix, key)
			}
		}
	}
}
