package fastpath

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the packet path free of HTTP, JSON and the control
// plane. Direct imports are checked for net/http and encoding/json (the
// metrics library links net/http for its push feature, and passport links
// encoding/json for parsing, neither on this path); the whole dependency
// graph is checked for the API, verification and config packages.
func TestDependencies(t *testing.T) {
	direct, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, d := range strings.Fields(string(direct)) {
		if d == "net/http" || d == "encoding/json" {
			t.Errorf("fastpath imports %s", d)
		}
	}
	for _, d := range strings.Fields(string(deps)) {
		switch d {
		case "github.com/shakenline/shakenline/api", "github.com/shakenline/shakenline/verify",
			"github.com/shakenline/shakenline/config":
			t.Errorf("fastpath depends on %s", d)
		}
	}
}
