package prereq

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissingTool is run by TestRule in a child process.
func TestMissingTool(t *testing.T) {
	if os.Getenv("PREREQ_CHILD") == "" {
		t.Skip("run by TestRule")
	}
	Tool(t, "shakenline-no-such-tool")
	t.Log("reached past a missing tool")
}

// TestRule: a missing prerequisite skips on a developer's machine and fails
// under CI=true; a present one passes either way.
func TestRule(t *testing.T) {
	run := func(ci string) string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingTool$", "-test.v")
		cmd.Env = append(os.Environ(), "PREREQ_CHILD=1", "CI="+ci)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := run(""); !strings.Contains(out, "--- SKIP: TestMissingTool") || strings.Contains(out, "reached past") {
		t.Errorf("without CI, a missing tool must skip:\n%s", out)
	}
	if out := run("true"); !strings.Contains(out, "--- FAIL: TestMissingTool") || strings.Contains(out, "reached past") {
		t.Errorf("under CI=true, a missing tool must fail:\n%s", out)
	}
	if p := Tool(t, "sh"); p == "" {
		t.Error("sh not found")
	}
}
