package fastpath

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
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

// TestModeChosenOnce keeps the mode a decision New makes once, by choosing
// the mode's egress: no other function of the package reads Config.Mode
// (a per-packet switch on the mode would creep back in there).
func TestModeChosenOnce(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Recv == nil && fd.Name.Name == "New" {
					continue
				}
				ast.Inspect(fd, func(n ast.Node) bool {
					if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Mode" {
						t.Errorf("%s: %s reads the mode; choose per-mode behaviour in New (egress)", fset.Position(sel.Pos()), fd.Name.Name)
					}
					return true
				})
			}
		}
	}
}
