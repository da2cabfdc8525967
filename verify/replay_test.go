package verify

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReplay(t *testing.T) {
	l := newLab(t)
	v := l.verifier(nil)
	now := time.Now()
	id := sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	in := Input{Identity: []string{id}, Time: now}
	if r := v.Verify(context.Background(), in); r.Verstat != Passed {
		t.Fatalf("first: %+v", r)
	}
	in.Time = now.Add(30 * time.Second)
	if r := v.Verify(context.Background(), in); r.Verstat != Failed || !errors.Is(r.Err, ErrReplay) || r.Code != 438 {
		t.Fatalf("replay: %+v", r)
	}
	// A forged copy does not poison the filter: the genuine one still passes once.
	id2 := sign(t, l.h.SPKey, l.url("/sp.pem"), claims("12025550100", now))
	parts := strings.Split(id2, ".")
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)) + id2[strings.IndexByte(id2, ';'):]
	if r := v.Verify(context.Background(), Input{Identity: []string{forged}, Time: now}); r.Verstat != Failed {
		t.Fatalf("forged: %+v", r)
	}
	if r := v.Verify(context.Background(), Input{Identity: []string{id2}, Time: now}); r.Verstat != Passed {
		t.Fatalf("genuine after forged: %+v", r)
	}
	v2 := l.verifier(func(c *Config) { c.DisableReplay = true })
	for i := 0; i < 2; i++ {
		if r := v2.Verify(context.Background(), Input{Identity: []string{id}, Time: now}); r.Verstat != Passed {
			t.Fatalf("DisableReplay %d: %+v", i, r)
		}
	}
}

func TestReplayFilterBounded(t *testing.T) {
	f := newReplayFilter(time.Minute, 100)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		var k [32]byte
		k[0], k[1] = byte(i), byte(i>>8)
		if f.seen(k, now) {
			t.Fatalf("%d seen", i)
		}
	}
	if len(f.cur) > 100 || len(f.prev) > 100 {
		t.Fatalf("generations %d/%d", len(f.cur), len(f.prev))
	}
	k := [32]byte{0xaa}
	if f.seen(k, now) || !f.seen(k, now.Add(time.Second)) {
		t.Fatal("second sighting not flagged")
	}
	// After two windows a key is forgotten.
	var z [32]byte
	z[5] = 9
	f.seen(z, now)
	f.seen([32]byte{1, 2, 3}, now.Add(2*time.Minute))
	f.seen([32]byte{4, 5, 6}, now.Add(4*time.Minute))
	if f.seen(z, now.Add(4*time.Minute)) {
		t.Error("key kept beyond two windows")
	}
}
