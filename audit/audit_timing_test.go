package audit

import (
	"path/filepath"
	"testing"
)

func BenchmarkRecord(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.log"), Options{Queue: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := &Record{CallID: []byte("a84b4c76e66710@pc33.example.org"), Orig: []byte("12155550100"),
		Dest: []byte("12155550199"), Attest: 'A', Rule: "retail", Signer: "soft", CertFingerprint: "ff"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Record(rec)
		}
	})
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}
