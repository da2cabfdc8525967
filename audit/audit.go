package audit

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
)

// Size limits of one entry.
const (
	MaxTN   = 32 // bytes of orig kept
	MaxDest = 96 // bytes of dest kept (several numbers joined with ',')
)

// Defaults for Options.
const (
	DefaultMaxBytes = 100 << 20
	DefaultKeep     = 5
	DefaultQueue    = 1 << 16
)

// ErrClosed is returned by operations on a closed Log.
var ErrClosed = errors.New("audit: log closed")

var (
	mRecords     = metrics.NewCounter(`shakenline_audit_records_total`)
	mDropped     = metrics.NewCounter(`shakenline_audit_dropped_total`)
	mWriteErrors = metrics.NewCounter(`shakenline_audit_write_errors_total`)
	mRotations   = metrics.NewCounter(`shakenline_audit_rotations_total`)
)

// Options tune Open. Zero values take the defaults.
type Options struct {
	// MaxBytes is the size at which the file is rotated; default 100 MiB.
	MaxBytes int64
	// Keep is the number of rotated files kept (path.1 ... path.Keep);
	// default 5, negative keeps none.
	Keep int
	// Queue is the number of records that may wait for the writer; default
	// 65536. Records offered while it is full are dropped and counted.
	Queue int
}

// Record is one signed call. Byte slices are copied by Record; strings are
// kept by reference (they are expected to be long-lived: rule names, signer
// names, the certificate fingerprint).
type Record struct {
	Time            time.Time // when signed; zero means now
	CallID          []byte    // raw Call-ID; only its SHA-256 prefix is kept
	Orig, Dest      []byte    // E.164 digits; several dest numbers joined with ','
	Attest          byte      // 'A', 'B' or 'C'
	Rule            string    // policy rule that decided the attestation
	Signer          string    // signer that produced the signature
	CertFingerprint string    // Fingerprint of the signing certificate
	Transport       string    // how the call came: udp, tcp, tls ("" for an HTTP request)
}

// entry is the fixed-size queue form of a Record.
type entry struct {
	t                    int64
	call                 [16]byte
	origN, destN         uint8
	attest               [1]byte
	orig                 [MaxTN]byte
	dest                 [MaxDest]byte
	rule, signer, certFP string
	transport            string
}

// Log is an asynchronous, size-rotated audit file. Safe for concurrent use.
type Log struct {
	path    string
	opt     Options
	q       chan entry
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	once    sync.Once
	dropped atomic.Uint64
	written atomic.Uint64

	// writer goroutine only
	f    *os.File
	size int64
	buf  []byte
	err  error // last write error, reported by Close
}

// Open opens (appends to) the audit file at path and starts its writer.
func Open(path string, o Options) (*Log, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Keep == 0 {
		o.Keep = DefaultKeep
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	l := &Log{path: path, opt: o, q: make(chan entry, o.Queue), stop: make(chan struct{}),
		done: make(chan struct{}), buf: make([]byte, 0, 128<<10)}
	if err := l.open(); err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Record queues r for writing. It never blocks and does not allocate; it
// returns false when the record was dropped (queue full or Log closed).
func (l *Log) Record(r *Record) bool {
	if l.closed.Load() {
		l.dropped.Add(1)
		mDropped.Inc()
		return false
	}
	var e entry
	if r.Time.IsZero() {
		e.t = time.Now().UnixNano()
	} else {
		e.t = r.Time.UnixNano()
	}
	sum := sha256.Sum256(r.CallID)
	copy(e.call[:], sum[:16])
	e.origN = uint8(copy(e.orig[:], r.Orig))
	e.destN = uint8(copy(e.dest[:], r.Dest))
	e.attest[0] = r.Attest
	e.rule, e.signer, e.certFP, e.transport = r.Rule, r.Signer, r.CertFingerprint, r.Transport
	select {
	case l.q <- e:
		return true
	default:
		l.dropped.Add(1)
		mDropped.Inc()
		return false
	}
}

// Dropped is the number of records this Log dropped.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Written is the number of records this Log wrote to its file.
func (l *Log) Written() uint64 { return l.written.Load() }

// Path is the file being written.
func (l *Log) Path() string { return l.path }

// Close writes what is queued, fsyncs and closes the file. It returns the
// last write error, if any. Calling it again returns ErrClosed.
func (l *Log) Close() error {
	err := ErrClosed
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		<-l.done
		err = l.err
	})
	return err
}

func (l *Log) run() {
	defer close(l.done)
	for {
		select {
		case e := <-l.q:
			l.format(&e)
			l.drain(false)
		case <-l.stop:
			l.drain(true)
			if l.f != nil {
				if err := l.f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
					l.fail(err) // EINVAL: a pipe or device, which cannot be synced
				}
				if err := l.f.Close(); err != nil {
					l.fail(err)
				}
				l.f = nil
			}
			return
		}
	}
}

// drain formats whatever is queued now, writing every 64 KiB and at the end.
func (l *Log) drain(final bool) {
	for {
		if len(l.buf) >= 64<<10 {
			l.flush()
		}
		select {
		case e := <-l.q:
			l.format(&e)
			continue
		default:
		}
		l.flush()
		if final && len(l.q) > 0 {
			continue
		}
		return
	}
}

func (l *Log) flush() {
	if len(l.buf) == 0 {
		return
	}
	if l.size > 0 && l.size+int64(len(l.buf)) > l.opt.MaxBytes {
		if err := l.rotate(); err != nil {
			l.fail(err)
		}
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			l.fail(err)
			l.buf = l.buf[:0]
			return
		}
	}
	n, err := l.f.Write(l.buf)
	l.size += int64(n)
	if err != nil {
		l.fail(err)
	} else {
		for _, c := range l.buf {
			if c == '\n' {
				l.written.Add(1)
				mRecords.Inc()
			}
		}
	}
	l.buf = l.buf[:0]
}

func (l *Log) fail(err error) {
	mWriteErrors.Inc()
	l.err = fmt.Errorf("audit: %w", err)
}

// rotate fsyncs and closes the file and shifts path -> path.1 -> ... ->
// path.Keep; the oldest is overwritten. With Keep < 0 the file is removed.
func (l *Log) rotate() error {
	mRotations.Inc()
	if l.f != nil {
		_ = l.f.Sync()
		if err := l.f.Close(); err != nil {
			return err
		}
		l.f = nil
	}
	if l.opt.Keep < 0 {
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		for i := l.opt.Keep - 1; i >= 1; i-- {
			err := os.Rename(l.path+"."+strconv.Itoa(i), l.path+"."+strconv.Itoa(i+1))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	l.size = 0
	return l.open()
}

// format appends one line for e to l.buf.
func (l *Log) format(e *entry) {
	b := l.buf
	b = append(b, "time="...)
	b = time.Unix(0, e.t).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, " call="...)
	b = hex.AppendEncode(b, e.call[:])
	b = append(b, " orig="...)
	b = appendValue(b, e.orig[:e.origN])
	b = append(b, " dest="...)
	b = appendValue(b, e.dest[:e.destN])
	b = append(b, " attest="...)
	if e.attest[0] == 0 {
		b = append(b, '-')
	} else {
		b = appendValue(b, e.attest[:])
	}
	b = append(b, " rule="...)
	b = appendValue(b, e.rule)
	b = append(b, " signer="...)
	b = appendValue(b, e.signer)
	b = append(b, " cert="...)
	b = appendValue(b, e.certFP)
	b = append(b, " transport="...)
	b = appendValue(b, e.transport)
	b = append(b, '\n')
	l.buf = b
}

// appendValue writes v as is, "-" when empty, or Go-quoted when it could
// break the key=value split.
func appendValue[T string | []byte](b []byte, v T) []byte {
	if len(v) == 0 {
		return append(b, '-')
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == '"' || c == '=' || c == 0x7f || c >= utf8.RuneSelf {
			return strconv.AppendQuote(b, string(v))
		}
	}
	return append(b, v...)
}

// Fingerprint is the SHA-256 of the certificate's DER in lowercase hex, the
// cert= field of a line.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
