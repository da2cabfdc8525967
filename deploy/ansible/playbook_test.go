package ansible

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// playBase is the limit of one ansible-playbook run on an idle machine;
// playLimit scales it with the load, at most by playMaxScale.
const (
	playBase     = 4 * time.Minute
	playMaxScale = 4
)

type recap struct{ ok, changed, unreachable, failed int }

var recapRE = regexp.MustCompile(`(?m)^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// play is one ansible-playbook run.
type play struct {
	out   string
	recap map[string]recap // per host, from PLAY RECAP
	took  time.Duration
	tasks []task // in the order they started
	err   error
}

// task is a task or handler of a run, timed by when its banner and the
// next one were printed (the hosts run it in parallel).
type task struct {
	name        string // TASK [appliance : Install the appliance binary]
	start, took time.Duration
}

// taskClock collects ansible-playbook's output and times its task banners
// as they arrive.
type taskClock struct {
	start time.Time
	mu    sync.Mutex
	out   bytes.Buffer
	line  []byte
	tasks []task
}

func (c *taskClock) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Since(c.start)
	c.out.Write(p)
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			c.line = append(c.line, rest...)
			break
		}
		c.line = append(c.line, rest[:i]...)
		c.banner(now, string(c.line))
		c.line, rest = c.line[:0], rest[i+1:]
	}
	return len(p), nil
}

// banner ends the running task at a task, handler or recap banner and
// starts the next.
func (c *taskClock) banner(now time.Duration, line string) {
	if !strings.HasPrefix(line, "TASK [") && !strings.HasPrefix(line, "RUNNING HANDLER [") && !strings.HasPrefix(line, "PLAY RECAP") {
		return
	}
	c.stop(now)
	if !strings.HasPrefix(line, "PLAY RECAP") {
		c.tasks = append(c.tasks, task{name: strings.TrimRight(line, " *"), start: now})
	}
}

// stop ends the running task, if any.
func (c *taskClock) stop(now time.Duration) {
	if n := len(c.tasks); n > 0 && c.tasks[n-1].took == 0 {
		c.tasks[n-1].took = max(now-c.tasks[n-1].start, time.Nanosecond)
	}
}

// playLimit bounds one ansible-playbook run: playBase on an idle machine,
// scaled by the run queue per CPU (the 1-minute load average over the
// CPUs, from 1 to playMaxScale), and never past the test's deadline less
// a minute for the checks and the cleanup. The string says how it was
// reached.
func playLimit(t *testing.T) (time.Duration, string) {
	scale, load := 1.0, -1.0
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				load = v
				scale = min(max(v/float64(runtime.NumCPU()), 1), playMaxScale)
			}
		}
	}
	limit := time.Duration(float64(playBase) * scale).Round(time.Second)
	why := fmt.Sprintf("%v x %.1f: load %.1f on %d CPUs", playBase, scale, load, runtime.NumCPU())
	if d, ok := t.Deadline(); ok {
		if left := time.Until(d) - time.Minute; left < limit {
			limit = max(left, 10*time.Second).Round(time.Second)
			why += ", cut to the go test -timeout less a minute"
		}
	}
	return limit, why
}

// playbook runs ansible-playbook within playLimit (runPlay).
func (l *lab) playbook(name string, args ...string) *play {
	t := l.t
	t.Helper()
	limit, why := playLimit(t)
	cmd := exec.Command("ansible-playbook", append([]string{"-i", l.invDir, name}, args...)...)
	cmd.Dir = l.ansible
	cp := filepath.Join(l.dir, "cp")
	_ = os.MkdirAll(cp, 0o700)
	cmd.Env = append(os.Environ(),
		"ANSIBLE_CONFIG="+filepath.Join(l.ansible, "ansible.cfg"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0", "PYTHONUNBUFFERED=1",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(l.dir, "ansible-local"),
		"ANSIBLE_SSH_CONTROL_PATH_DIR="+cp,
		"ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=30s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
		"ANSIBLE_HOST_KEY_CHECKING=False",
	)
	p := runPlay(cmd, limit, why)
	if err := os.WriteFile(filepath.Join(l.dir, fmt.Sprintf("ansible-%d.log", time.Now().UnixNano())), []byte(p.out), 0o600); err != nil {
		t.Log(err)
	}
	for _, secret := range []string{testPIN, testSOPIN, testToken, "PRIVATE KEY"} {
		if strings.Contains(p.out, secret) {
			t.Errorf("ansible output contains secret material %q", secret)
		}
	}
	return p
}

// runPlay runs cmd, an ansible-playbook, in its own process group and
// times its tasks. At limit the whole group (workers, ssh clients) is
// killed and the run fails with an error that names the task that was
// running, for how long, and the slowest tasks before it; why says how
// the limit was reached.
func runPlay(cmd *exec.Cmd, limit time.Duration, why string) *play {
	clock := &taskClock{start: time.Now()}
	cmd.Stdout, cmd.Stderr = clock, clock
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 10 * time.Second // output pipes a stray process holds
	p := &play{recap: map[string]recap{}}
	if p.err = cmd.Start(); p.err != nil {
		return p
	}
	var stopped atomic.Bool
	timer := time.AfterFunc(limit, func() {
		stopped.Store(true)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	p.err = cmd.Wait()
	timer.Stop()
	p.took = time.Since(clock.start)
	clock.mu.Lock()
	clock.stop(p.took)
	p.out, p.tasks = clock.out.String(), slices.Clone(clock.tasks)
	clock.mu.Unlock()
	if stopped.Load() {
		p.err = fmt.Errorf("stopped at its limit of %v (%s)", limit, why)
		if n := len(p.tasks); n > 0 {
			last := p.tasks[n-1]
			p.err = fmt.Errorf("%w while running %s, for %v; before it:\n%s",
				p.err, last.name, last.took.Round(100*time.Millisecond), profileOf(p.tasks[:n-1]))
		}
	}
	for _, m := range recapRE.FindAllStringSubmatch(p.out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		p.recap[m[1]] = recap{n(2), n(3), n(4), n(5)}
	}
	return p
}

// mustPlaybook is playbook that fails the test when the run fails.
func (l *lab) mustPlaybook(name string, args ...string) *play {
	l.t.Helper()
	p := l.playbook(name, args...)
	if p.err != nil {
		l.t.Fatalf("ansible-playbook %s %v: %v\n%s", name, args, p.err, tail(p.out, 60))
	}
	return p
}

// String is the run's time and recap.
func (p *play) String() string {
	return fmt.Sprintf("%v %+v", p.took.Round(100*time.Millisecond), p.recap)
}

// profile lists the run's slowest tasks.
func (p *play) profile() string { return profileOf(p.tasks) }

// profileOf lists the eight slowest of tasks, with their share of the
// time.
func profileOf(tasks []task) string {
	var all time.Duration
	for _, k := range tasks {
		all += k.took
	}
	byTime := slices.Clone(tasks)
	slices.SortStableFunc(byTime, func(a, b task) int { return int(b.took - a.took) })
	var b strings.Builder
	fmt.Fprintf(&b, "  %d tasks in %v; slowest:\n", len(tasks), all.Round(100*time.Millisecond))
	for _, k := range byTime[:min(8, len(byTime))] {
		fmt.Fprintf(&b, "  %7v %3.0f%%  %s\n", k.took.Round(100*time.Millisecond), 100*k.took.Seconds()/max(all.Seconds(), 1e-9), k.name)
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// steps keeps the task and host lines of an ansible-playbook run.
func steps(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "PLAY ["), strings.HasPrefix(line, "TASK ["), strings.HasPrefix(line, "RUNNING HANDLER"):
			b.WriteString(strings.TrimRight(line, " *") + "\n")
		case strings.HasPrefix(line, "changed: "), strings.HasPrefix(line, "ok: ["), strings.HasPrefix(line, "fatal: "),
			strings.HasPrefix(line, "skipping: ["), strings.Contains(line, "\"msg\":"):
			b.WriteString("    " + strings.TrimSpace(line) + "\n")
		}
	}
	return b.String()
}
