package passport

import (
	"testing"
)

func TestHotPathAllocs(t *testing.T) {
	b, err := NewBuilder(goldenX5U)
	if err != nil {
		t.Fatal(err)
	}
	c := fixedClaims()
	c.Dest = append(c.Dest, []byte("441632960000"))
	buf := make([]byte, 0, 1024)
	out := make([]byte, 0, 1024)
	var sig [64]byte
	n := testing.AllocsPerRun(1000, func() {
		c.IAT++
		si := b.AppendSigningInput(buf[:0], c)
		out = b.AppendIdentity(out[:0], si, &sig)
	})
	if n != 0 {
		t.Errorf("AppendSigningInput+AppendIdentity: %v allocs per call, want 0", n)
	}
	if len(out) != b.IdentityLen(len(b.AppendSigningInput(nil, c))) {
		t.Errorf("IdentityLen mismatch")
	}
	if b.SigningInputCap(c) > 1024 {
		t.Fatalf("test buffer too small")
	}
	n = testing.AllocsPerRun(1000, func() {
		out = AppendOrigID(out[:0], c.OrigID)
	})
	if n != 0 {
		t.Errorf("AppendOrigID: %v allocs", n)
	}
}

func BenchmarkAppendSigningInput(b *testing.B) {
	bl, _ := NewBuilder(goldenX5U)
	c := fixedClaims()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(bl.AppendSigningInput(nil, c))))
	for b.Loop() {
		buf = bl.AppendSigningInput(buf[:0], c)
	}
}

func BenchmarkAppendIdentity(b *testing.B) {
	bl, _ := NewBuilder(goldenX5U)
	c := fixedClaims()
	si := bl.AppendSigningInput(nil, c)
	var sig [64]byte
	out := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(bl.IdentityLen(len(si))))
	for b.Loop() {
		out = bl.AppendIdentity(out[:0], si, &sig)
	}
}

func BenchmarkBuildParallel(b *testing.B) {
	bl, _ := NewBuilder(goldenX5U)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := fixedClaims()
		buf := make([]byte, 0, 1024)
		out := make([]byte, 0, 1024)
		var sig [64]byte
		for pb.Next() {
			si := bl.AppendSigningInput(buf[:0], c)
			out = bl.AppendIdentity(out[:0], si, &sig)
		}
	})
}

func BenchmarkParseIdentity(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseIdentity(goldenIdentity); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySignature(b *testing.B) {
	id, _ := ParseIdentity(goldenIdentity)
	k := fixedKey()
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifySignature(&k.PublicKey, id); err != nil {
			b.Fatal(err)
		}
	}
}
