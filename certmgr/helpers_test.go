package certmgr_test

import (
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/hsm/softhsmtest"
)

func fmtSscan(s string, f *float64) (int, error) { return fmt.Sscan(s, f) }

func pemBlock(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keyIDs reads the CKA_IDs of the current key and the retiring ones from
// the state file.
func keyIDs(t *testing.T, stateDir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		Key struct {
			ID string `json:"pkcs11_id"`
		} `json:"key"`
	}
	var st struct {
		Current  *rec  `json:"current"`
		Retiring []rec `json:"retiring"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, r := range append([]rec{*st.Current}, st.Retiring...) {
		id, err := hex.DecodeString(r.Key.ID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

// countKeys counts the private keys labelled label on u's token with
// pkcs11-tool (OpenSC), a second implementation reading the token.
func countKeys(t *testing.T, u hsm.URI, label string) int {
	t.Helper()
	pin, err := u.PIN()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pkcs11-tool", "--module", softhsmtest.DefaultModule, "--token-label", u.Token,
		"--login", "--pin", pin, "--list-objects", "--type", "privkey").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	n := 0
	for _, obj := range strings.Split(string(out), "Private Key Object")[1:] {
		if !strings.Contains(obj, "label:      "+label+"\n") {
			continue
		}
		n++
		if !strings.Contains(obj, "never extractable") || !strings.Contains(obj, "sensitive") {
			t.Errorf("key %q is extractable or not sensitive:\n%s", label, obj)
		}
	}
	return n
}
