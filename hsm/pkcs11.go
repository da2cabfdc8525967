package hsm

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// PKCS#11 signer errors. Open wraps them with the Cryptoki error where there
// is one; the messages never contain the PIN.
var (
	ErrTokenNotFound  = errors.New("hsm: PKCS#11 token not found")
	ErrObjectNotFound = errors.New("hsm: PKCS#11 private key not found")
	ErrAmbiguousKey   = errors.New("hsm: PKCS#11 URI matches more than one private key")
	ErrLogin          = errors.New("hsm: PKCS#11 login failed")
	ErrSessionLost    = errors.New("hsm: PKCS#11 sessions lost, reopening")
	ErrSignature      = errors.New("hsm: PKCS#11 signature is not 64 bytes")
)

// PKCS11Options tune OpenPKCS11. Zero values take the defaults shown.
type PKCS11Options struct {
	// Name in metrics, /healthz and Request.SignedBy. Default "pkcs11:<token label>".
	Name string
	// Sessions is the number of sessions opened on the token, one per
	// worker goroutine of a Chain. Default 4 (a Chain passes its Workers).
	Sessions int
	// Want is the certificate's public key. The token's key must match it
	// (CKA_EC_POINT when present, and always a test signature verified with
	// Want). Nil trusts the token's CKA_EC_POINT.
	Want *ecdsa.PublicKey
	// ReopenMin and ReopenMax bound the exponential backoff between attempts
	// to reopen lost sessions. Defaults 50ms and 2s.
	ReopenMin, ReopenMax time.Duration
	// NoDirect makes every signature go through miekg/pkcs11 (C_SignInit,
	// then C_Sign twice: length, then signature), one cgo call each,
	// instead of the module's function list called directly from C, a
	// batch per call. For comparisons and for a module the direct path
	// cannot use (it falls back by itself when it cannot load it).
	NoDirect bool
}

// PKCS11 signs with a private key that never leaves a PKCS#11 token, using
// CKM_ECDSA over the 32-byte SHA-256 digest; the token returns r||s, which
// is exactly the JWS ES256 form.
//
// It keeps Sessions sessions on the token (logged in once for all of them as
// Cryptoki login is per token and application) in a pool; SignDigest borrows
// one for a C_SignInit+C_Sign pair. When the token goes away or the module
// resets (CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED,
// CKR_TOKEN_NOT_PRESENT, ...) SignDigest fails fast with ErrSessionLost and a
// background goroutine rediscovers the token, logs in, finds the key, checks
// it against the certificate again and reopens the sessions, with backoff; if
// the token cannot be found, it re-initialises the module (some modules,
// SoftHSM among them, only see a re-inserted token after C_Initialize).
// A PIN the token refuses during recovery (CKR_PIN_INCORRECT, _LOCKED, ...)
// stops recovery, so a changed PIN cannot lock the token by repeated
// attempts; a token present without a user PIN yet (being provisioned:
// CKR_USER_PIN_NOT_INITIALIZED, which counts no attempt) is retried, with
// a module re-initialisation so the module sees the PIN once it is set.
type PKCS11 struct {
	name string
	uri  URI
	pin  string // never logged
	opt  PKCS11Options
	mod  *module
	pub  *ecdsa.PublicKey
	mech []*pkcs11.Mechanism

	pool     chan *session
	tok      atomic.Pointer[token] // nil while sessions are lost
	live     atomic.Uint64         // tok's gen, 0 while lost: read by every signing call (in C too)
	inflight atomic.Int32          // calls that may use handles of tok (recovery waits for them)
	nsess    atomic.Int32
	gen      atomic.Uint64
	err      atomic.Pointer[errBox]
	retired  atomic.Int32  // sessions given up because the token refused more (CKR_SESSION_COUNT)
	slot     atomic.Uint64 // the current token's slot ID + 1, 0 before the first

	mu         sync.Mutex // serialises discovery
	recovering bool       // guarded by mu
	last       *token     // guarded by mu: the token whose anchor session is open
	stopped    bool       // guarded by mu: recovery gave up (wrong PIN) or Close
	done       chan struct{}
	closeOnce  sync.Once
}

type errBox struct{ err error }

// token is one successful discovery: valid while the module's gen is modGen.
type token struct {
	modGen uint64
	gen    uint64
	slot   uint
	key    pkcs11.ObjectHandle
	anchor pkcs11.SessionHandle // keeps the login while pool sessions come and go
}

type session struct {
	h      pkcs11.SessionHandle
	tokGen uint64
	modGen uint64
	open   bool
}

// OpenPKCS11 loads the module named by u, finds the token and the private
// key, logs in with the PIN from u's pin-source and checks the key against
// opt.Want. Errors say which step failed: ErrModule, ErrNoPIN,
// ErrTokenNotFound, ErrLogin, ErrObjectNotFound, ErrNotP256, ErrKeyMismatch.
func OpenPKCS11(u URI, opt PKCS11Options) (*PKCS11, error) {
	if opt.Sessions <= 0 {
		opt.Sessions = 4
	}
	if opt.ReopenMin <= 0 {
		opt.ReopenMin = 50 * time.Millisecond
	}
	if opt.ReopenMax < opt.ReopenMin {
		opt.ReopenMax = max(2*time.Second, opt.ReopenMin)
	}
	path, err := u.Module()
	if err != nil {
		return nil, err
	}
	pin, err := u.PIN()
	if err != nil {
		return nil, err
	}
	mod, err := openModule(path)
	if err != nil {
		return nil, err
	}
	p := &PKCS11{
		name: opt.Name,
		uri:  u,
		pin:  pin,
		opt:  opt,
		mod:  mod,
		pub:  opt.Want,
		mech: []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)},
		pool: make(chan *session, opt.Sessions),
		done: make(chan struct{}),
	}
	if p.name == "" {
		p.name = "pkcs11:" + u.Token
	}
	tk, err := p.discover()
	if err != nil {
		mod.release()
		return nil, err
	}
	p.install(tk)
	mod.use(p)
	if err := p.openSessions(tk); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// openSessions opens the pool's sessions at start, so that a token that
// allows fewer sessions than asked for (CKR_SESSION_COUNT, counting the
// anchor session that keeps the login) says so now: the pool then holds
// what the token gave, and SessionCap reports it (a Chain runs that many
// workers).
func (p *PKCS11) openSessions(tk *token) error {
	m := p.mod
	m.mu.RLock()
	defer m.mu.RUnlock()
	for range p.opt.Sessions {
		h, err := m.ctx.OpenSession(tk.slot, pkcs11.CKF_SERIAL_SESSION)
		if isCode(err, pkcs11.CKR_SESSION_COUNT) {
			break
		}
		if err != nil {
			return fmt.Errorf("hsm: %s: C_OpenSession: %w", p.name, err)
		}
		p.pool <- &session{h: h, tokGen: tk.gen, modGen: m.gen, open: true}
		p.nsess.Add(1)
	}
	if len(p.pool) == 0 {
		return fmt.Errorf("hsm: %s: the token allows no session besides the login's (CKR_SESSION_COUNT)", p.name)
	}
	p.retired.Store(int32(p.opt.Sessions - len(p.pool)))
	return nil
}

// SessionCap is the number of sessions the signer works with: the
// Sessions asked for, less those the token refused.
func (p *PKCS11) SessionCap() int { return p.opt.Sessions - int(p.retired.Load()) }

// Name implements Signer.
func (p *PKCS11) Name() string { return p.name }

// Public implements Signer.
func (p *PKCS11) Public() *ecdsa.PublicKey { return p.pub }

// Ready reports whether the token is usable (sessions not lost).
func (p *PKCS11) Ready() bool { return p.tok.Load() != nil }

// Sessions reports the number of open sessions (0 while lost).
func (p *PKCS11) Sessions() int {
	if p.tok.Load() == nil {
		return 0
	}
	return int(p.nsess.Load())
}

// LastError is the most recent session or recovery error, nil if none.
func (p *PKCS11) LastError() error {
	if b := p.err.Load(); b != nil {
		return b.err
	}
	return nil
}

// SignDigest implements Signer. It fails at once with an error wrapping
// ErrSessionLost while the token is being reopened.
func (p *PKCS11) SignDigest(ctx context.Context, digest *[32]byte, sig *[64]byte) error {
	b := bufPool.Get().(*signBuf)
	defer bufPool.Put(b)
	b.digest[0] = *digest
	var errs [1]error
	if err := p.signBatch(ctx, b, 1, errs[:]); err != nil {
		return err
	}
	if errs[0] == nil {
		*sig = b.sig[0]
	}
	return errs[0]
}

var bufPool = sync.Pool{New: func() any { return new(signBuf) }}

// signBatch signs b.digest[:n] on one session, each with C_SignInit and
// C_Sign: in one cgo call when the module's function list is usable
// (directList), else through miekg/pkcs11 one by one. A non-nil result
// means nothing was signed (no session, token lost, ctx done); otherwise
// errs[i] is digest i's error, wrapped, and b.sig[i] its signature.
func (p *PKCS11) signBatch(ctx context.Context, b *signBuf, n int, errs []error) error {
	tk := p.tok.Load()
	if tk == nil {
		return ErrSessionLost
	}
	var s *session
	select {
	case s = <-p.pool:
	default:
		select {
		case s = <-p.pool:
		case <-ctx.Done():
			return fmt.Errorf("hsm: %s: waiting for a session: %w", p.name, ctx.Err())
		}
	}
	keep := true
	defer func() {
		if keep {
			p.pool <- s
		}
	}()
	// Counted before tk is checked again: recovery marks the token lost,
	// then waits for the calls counted here before it closes the sessions
	// and opens new ones, whose handles may reuse the old numbers.
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	if p.tok.Load() != tk {
		return ErrSessionLost
	}
	m := p.mod
	m.mu.RLock()
	if m.closed { // tk was loaded just before Close
		m.mu.RUnlock()
		return errReleased
	}
	if m.gen != tk.modGen {
		// Another signer re-initialised the shared module: every handle
		// is dead. Rediscover now rather than fail the call.
		m.mu.RUnlock()
		var err error
		if tk, err = p.refresh(tk); err != nil {
			return err
		}
		m.mu.RLock()
		if m.closed || m.gen != tk.modGen {
			m.mu.RUnlock()
			return ErrSessionLost
		}
	}
	if !s.open || s.tokGen != tk.gen {
		if s.open {
			// A handle from before a loss or a re-initialisation. It is
			// never closed one by one: it is dead, or recovery closed it
			// with all the others (C_CloseAllSessions), and its number may
			// now belong to a new session of this or another worker.
			s.open = false
			p.nsess.Add(-1)
		}
		h, err := m.ctx.OpenSession(tk.slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			m.mu.RUnlock()
			if isCode(err, pkcs11.CKR_SESSION_COUNT) {
				// The token allows fewer sessions now (another client
				// took some): work on with the others.
				keep = false
				p.retired.Add(1)
				p.setErr(fmt.Errorf("hsm: %s: C_OpenSession: %w; working on with %d sessions", p.name, err, p.SessionCap()))
				return fmt.Errorf("hsm: %s: C_OpenSession: %w", p.name, err)
			}
			p.lost(tk, err)
			return fmt.Errorf("hsm: %s: C_OpenSession: %w", p.name, err)
		}
		*s = session{h: h, tokGen: tk.gen, modGen: m.gen, open: true}
		p.nsess.Add(1)
	}
	if d := m.direct; d != nil && !p.opt.NoDirect {
		d.sign(s.h, tk.key, b, n, errs, &p.live, tk.gen)
	} else {
		for i := range n {
			if p.live.Load() != tk.gen {
				errs[i] = errStale
				continue
			}
			errs[i] = p.signOne(m.ctx, s.h, tk.key, &b.digest[i], &b.sig[i])
		}
	}
	m.mu.RUnlock()
	var lost error
	for i, err := range errs[:n] {
		if err == nil || errors.Is(err, ErrSignature) || errors.Is(err, ErrSessionLost) {
			continue
		}
		if lost == nil && sessionLost(err) {
			lost = err
		}
		errs[i] = fmt.Errorf("hsm: %s: C_Sign: %w", p.name, err)
	}
	if lost != nil {
		p.lost(tk, lost)
	}
	return nil
}

// errStale is a signature not asked for because the token was lost while
// the batch was being signed: its handles may name something else now.
var errStale = fmt.Errorf("%w: token lost during the batch", ErrSessionLost)

// signOne is one signature through miekg/pkcs11.
func (p *PKCS11) signOne(c *pkcs11.Ctx, h pkcs11.SessionHandle, key pkcs11.ObjectHandle, digest *[32]byte, sig *[64]byte) error {
	if err := c.SignInit(h, p.mech, key); err != nil {
		return err
	}
	out, err := c.Sign(h, digest[:])
	if err != nil {
		return err
	}
	if len(out) != 64 {
		return ErrSignature
	}
	copy(sig[:], out)
	return nil
}

// Close stops recovery and closes the sessions; the module is finalised
// when its last signer closes. Calls still in flight may fail.
func (p *PKCS11) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		close(p.done)
		last := p.last
		p.last = nil
		cur := p.tok.Swap(nil)
		p.live.Store(0)
		p.mu.Unlock()
		m := p.mod
		m.mu.RLock()
		// Only the current token's handles are ours to close: older ones
		// are dead and their numbers may be another signer's by now.
		current := func(gen, modGen uint64) bool { return cur != nil && gen == cur.gen && modGen == m.gen }
	drain:
		for {
			select {
			case s := <-p.pool:
				if s.open && current(s.tokGen, s.modGen) {
					_ = m.ctx.CloseSession(s.h)
				}
			default:
				break drain
			}
		}
		if last != nil && current(last.gen, last.modGen) {
			_ = m.ctx.CloseSession(last.anchor)
		}
		m.mu.RUnlock()
		m.unuse(p)
		m.release()
	})
	return nil
}

func (p *PKCS11) setErr(err error) { p.err.Store(&errBox{err}) }
