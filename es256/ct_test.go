package es256

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/shakenline/shakenline/internal/prereq"
)

// branchFree are the functions that touch k, k⁻¹, d or token values and must
// compile to straight-line code: this package's own and those of
// internal/p256 it calls, named as in the compiler's listing. (invert and
// batchInvert loop and branch on the public exponent and the public batch
// length only; they call these.)
var branchFree = []string{
	"es256.modAdd", "es256.online",
	"p256.MontMul", "p256.ReduceOnce", "p256.LessThan", "p256.IsZero",
	"p256.ToMont", "p256.FromMont", "p256.SetBytes", "p256.PutBytes", "p256.JacobianXZ",
}

// p256Pkg is the package holding the shared arithmetic, compiled with this
// one for the listing.
const p256Pkg = "github.com/shakenline/shakenline/internal/p256"

var (
	condJump    = regexp.MustCompile(`\tJ(?:[A-LN-Z][A-Z]*|MI)\t`) // any Jcc, not JMP
	scaledIndex = regexp.MustCompile(`\((?:[A-Z0-9]+)\*[1248]\)`)  // base(index*scale)
)

// TestArithmeticBranchFree compiles this package and internal/p256 with
// -gcflags=-S and checks, on amd64, that the secret-handling leaf functions
// contain no conditional jump other than the goroutine stack-growth check (a compare against
// 16(R14), the stack guard) and no scaled-index memory access (a
// data-dependent table lookup). It is the mechanical half of the
// constant-time review; the other half is reading invert, batchInvert and
// finish, which branch only on public loop bounds and exponent bits.
func TestArithmeticBranchFree(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("assembly check written for amd64")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	_, err := os.Stat(goTool)
	prereq.Need(t, err)
	cmd := exec.Command(goTool, "build", "-gcflags=-S", ".", p256Pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build -gcflags=-S: %v\n%s", err, stderr.Bytes())
	}

	want := map[string]bool{}
	for _, f := range branchFree {
		want[f] = true
	}
	seen := map[string]bool{}
	var fn, prev string
	sc := bufio.NewScanner(&stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\t") {
			fn, prev = "", ""
			if i := strings.Index(line, " STEXT"); i > 0 {
				name := line[:i]
				name = name[strings.LastIndex(name, "/")+1:]
				if want[name] {
					fn = name
					seen[name] = true
				}
			}
			continue
		}
		if fn == "" || strings.Contains(line, "\tPCDATA\t") || strings.Contains(line, "\tFUNCDATA\t") {
			continue
		}
		if condJump.MatchString(line) && !strings.Contains(prev, "16(R14)") {
			t.Errorf("%s: conditional branch: %s", fn, strings.TrimSpace(line))
		}
		if scaledIndex.MatchString(line) {
			t.Errorf("%s: indexed memory access: %s", fn, strings.TrimSpace(line))
		}
		prev = line
	}
	for name := range want {
		if !seen[name] {
			// Inlined everywhere, so no body of its own to inspect: its
			// code is part of the callers checked here.
			t.Logf("%s has no standalone body (inlined)", name)
		}
	}
	if !seen["p256.MontMul"] || !seen["es256.online"] {
		t.Fatal("did not find p256.MontMul and es256.online in the compiler output")
	}
}
