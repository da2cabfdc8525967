package ansible

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRunPlayLimit: a run that outlives its limit is killed with what it
// started (the whole process group), and fails naming the task that was
// running; the tasks before it are timed from their banners.
func TestRunPlayLimit(t *testing.T) {
	script := `echo "PLAY [x] ***"
echo "TASK [appliance : Quick task] *****"; sleep 0.3
echo "TASK [appliance : Hanging task] ****"; echo "ok: [sl1]"
sleep 60 & wait`
	start := time.Now()
	p := runPlay(exec.Command("sh", "-c", script), 1500*time.Millisecond, "test limit")
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("runPlay returned after %v; the limit is 1.5 s (a child kept the pipes open?)", took)
	}
	if p.err == nil {
		t.Fatal("no error at the limit")
	}
	for _, want := range []string{"stopped at its limit of 1.5s (test limit) while running TASK [appliance : Hanging task], for 1.", "TASK [appliance : Quick task]"} {
		if !strings.Contains(p.err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, p.err)
		}
	}
	if len(p.tasks) != 2 || p.tasks[0].took < 250*time.Millisecond || p.tasks[0].took > 1200*time.Millisecond {
		t.Errorf("tasks %+v", p.tasks)
	}
	if !strings.Contains(p.out, "ok: [sl1]") {
		t.Errorf("output lost:\n%s", p.out)
	}
}

// TestRunPlayRecap: a run that ends in time has its recap and per-task
// times, with banners split across writes.
func TestRunPlayRecap(t *testing.T) {
	script := `printf 'TASK [appliance : A] ***\nok: [sl1]\nTA'; sleep 0.2; printf 'SK [appliance : B] ***\n'; sleep 0.2
printf 'PLAY RECAP ***\nsl1                        : ok=2    changed=1    unreachable=0    failed=0    skipped=0\n'`
	p := runPlay(exec.Command("sh", "-c", script), time.Minute, "")
	if p.err != nil {
		t.Fatal(p.err)
	}
	if r := p.recap["sl1"]; r.ok != 2 || r.changed != 1 {
		t.Errorf("recap %+v", p.recap)
	}
	if len(p.tasks) != 2 || p.tasks[0].name != "TASK [appliance : A]" || p.tasks[1].name != "TASK [appliance : B]" ||
		p.tasks[0].took < 150*time.Millisecond || p.tasks[1].took < 150*time.Millisecond {
		t.Errorf("tasks %+v", p.tasks)
	}
	if prof := p.profile(); !strings.Contains(prof, "2 tasks in") || !strings.Contains(prof, "TASK [appliance : B]") {
		t.Errorf("profile:\n%s", prof)
	}
}
