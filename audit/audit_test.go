package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// parseLine splits a line into its fields, unquoting quoted values.
func parseLine(t *testing.T, line string) (keys []string, vals map[string]string) {
	t.Helper()
	vals = map[string]string{}
	rest := line
	for rest != "" {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			t.Fatalf("no '=' in %q", rest)
		}
		if strings.HasPrefix(v, `"`) {
			// quoted: find the closing quote not preceded by a backslash
			i := 1
			for ; i < len(v); i++ {
				if v[i] == '\\' {
					i++
					continue
				}
				if v[i] == '"' {
					break
				}
			}
			q := v[:i+1]
			s, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("bad quoted value %q: %v", q, err)
			}
			vals[k] = s
			keys = append(keys, k)
			rest = strings.TrimPrefix(v[i+1:], " ")
			continue
		}
		val, r, _ := strings.Cut(v, " ")
		vals[k] = val
		keys = append(keys, k)
		rest = r
	}
	return keys, vals
}

func TestLineFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	callID := []byte("a84b4c76e66710@pc33.example.org")
	if !l.Record(&Record{Time: when, CallID: callID, Orig: []byte("12155550100"), Dest: []byte("12155550199,442079460018"),
		Attest: 'A', Rule: "retail", Signer: "pkcs11:tok-a", CertFingerprint: "abcd", Transport: "tcp"}) {
		t.Fatal("record dropped")
	}
	if !l.Record(&Record{Time: when, Attest: 'C', Rule: "odd rule \"x\"=y", Signer: "soft"}) {
		t.Fatal("record dropped")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if l.Record(&Record{Attest: 'A'}) {
		t.Fatal("Record after Close accepted")
	}
	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), lines)
	}
	sum := sha256.Sum256(callID)
	want := "time=2026-03-01T11:00:00.123456Z call=" + hex.EncodeToString(sum[:16]) +
		" orig=12155550100 dest=12155550199,442079460018 attest=A rule=retail signer=pkcs11:tok-a cert=abcd transport=tcp"
	if lines[0] != want {
		t.Fatalf("line\n got %s\nwant %s", lines[0], want)
	}
	if strings.Contains(lines[0], "pc33") {
		t.Fatal("raw Call-ID in the audit line")
	}
	keys, vals := parseLine(t, lines[1])
	if strings.Join(keys, ",") != "time,call,orig,dest,attest,rule,signer,cert,transport" {
		t.Fatalf("keys %v", keys)
	}
	if vals["rule"] != `odd rule "x"=y` || vals["orig"] != "-" || vals["cert"] != "-" || vals["attest"] != "C" || vals["transport"] != "-" {
		t.Fatalf("values %q", vals)
	}
	if l.Written() != 2 {
		t.Fatalf("Written %d", l.Written())
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, Options{MaxBytes: 4 << 10, Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		for !l.Record(&Record{CallID: fmt.Appendf(nil, "call-%d", i), Orig: []byte("12155550100"),
			Dest: []byte("12155550199"), Attest: 'B', Rule: "r", Signer: "soft", CertFingerprint: "ff"}) {
			time.Sleep(time.Millisecond) // queue full: let the writer catch up
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "audit.log audit.log.1 audit.log.2 audit.log.3" {
		t.Fatalf("files after rotation: %v", names)
	}
	total := 0
	for _, name := range names {
		st, _ := os.Stat(filepath.Join(dir, name))
		// a batch is written whole, so a file may pass MaxBytes by one batch
		if st.Size() > 4<<10+64<<10 {
			t.Fatalf("%s is %d bytes", name, st.Size())
		}
		for _, line := range readLines(t, filepath.Join(dir, name)) {
			if !strings.HasPrefix(line, "time=") || !strings.HasSuffix(line, " cert=ff transport=-") {
				t.Fatalf("torn line in %s: %q", name, line)
			}
			total++
		}
	}
	if l.Written() != n {
		t.Fatalf("written %d, want %d", l.Written(), n)
	}
	if total >= n {
		t.Fatalf("kept %d of %d lines: nothing rotated away", total, n)
	}
}

// TestDropWhenFull blocks the writer on a FIFO nobody reads, so the queue
// fills: Record must return false at once instead of blocking.
func TestDropWhenFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	rd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	l, err := Open(path, Options{Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	rec := &Record{CallID: []byte("x"), Orig: []byte("12155550100"), Dest: []byte("12155550199"), Attest: 'A',
		Rule: strings.Repeat("r", 200), Signer: "soft", CertFingerprint: strings.Repeat("f", 64)}
	sent, dropped := 0, false
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 1_000_000 && time.Now().Before(deadline); i++ {
		start := time.Now()
		ok := l.Record(rec)
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Record blocked for %v", d)
		}
		if !ok {
			dropped = true
			break
		}
		sent++
	}
	if !dropped || l.Dropped() == 0 {
		t.Fatalf("no drop after %d records with a stuck writer", sent)
	}
	// unblock the writer: read everything until it closes the FIFO
	if err := syscall.SetNonblock(int(rd.Fd()), false); err != nil {
		t.Fatal(err)
	}
	lines := make(chan int)
	go func() {
		n := 0
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 4096), 4096)
		for sc.Scan() {
			n++
		}
		lines <- n
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	n := <-lines
	if n != sent || uint64(n) != l.Written() {
		t.Fatalf("read %d lines, sent %d, written %d", n, sent, l.Written())
	}
}

func TestRecordAllocs(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"), Options{Queue: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec := &Record{Time: time.Now(), CallID: []byte("a84b4c76e66710@pc33.example.org"), Orig: []byte("12155550100"),
		Dest: []byte("12155550199"), Attest: 'A', Rule: "retail", Signer: "soft", CertFingerprint: "ff"}
	allocs := testing.AllocsPerRun(1000, func() {
		if !l.Record(rec) {
			t.Fatal("dropped")
		}
	})
	if allocs != 0 {
		t.Fatalf("Record allocates %.1f times per call", allocs)
	}
}
