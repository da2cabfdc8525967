package hsm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// ErrModule reports a PKCS#11 module that cannot be loaded or initialised.
var ErrModule = errors.New("hsm: cannot load PKCS#11 module")

// module is one loaded PKCS#11 library, shared by every signer of the
// process that names the same file: a library is loaded (and C_Initialize'd)
// once per process, so two signers on two slots of one module share it.
//
// Every Cryptoki call holds mu for reading; reinit (C_Finalize then
// C_Initialize, the only way to make some modules, SoftHSM among them, see a
// token that was removed and put back) holds it for writing, so no call runs
// across a re-initialisation. gen counts initialisations: session and object
// handles from an older gen are dead and may have been reused.
type module struct {
	path   string
	ctx    *pkcs11.Ctx
	direct *directList          // nil: sign through ctx
	refs   int                  // guarded by modules.mu
	users  map[*PKCS11]struct{} // guarded by modules.mu: the signers on this module

	mu         sync.RWMutex
	gen        uint64    // guarded by mu
	lastReinit time.Time // guarded by mu
	closed     bool      // guarded by mu: released, ctx destroyed; no call may follow
}

// errReleased is ErrSessionLost for a call that reached a module after its
// last signer closed.
var errReleased = fmt.Errorf("%w: module released", ErrSessionLost)

var modules struct {
	mu sync.Mutex
	m  map[string]*module
}

// minReinit spaces module re-initialisations, which cut every session of
// every signer on the module.
const minReinit = 500 * time.Millisecond

func openModule(path string) (*module, error) {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	if m := modules.m[path]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("%w: %s", ErrModule, path)
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("%w: %s: %w", ErrModule, path, err)
	}
	m := &module{path: path, ctx: ctx, direct: openDirect(ctx, path), refs: 1, gen: 1}
	if modules.m == nil {
		modules.m = map[string]*module{}
	}
	modules.m[path] = m
	return m, nil
}

// use and unuse record the signers of m, for slotShared.
func (m *module) use(p *PKCS11) {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	if m.users == nil {
		m.users = map[*PKCS11]struct{}{}
	}
	m.users[p] = struct{}{}
}

func (m *module) unuse(p *PKCS11) {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	delete(m.users, p)
}

// slotShared reports whether a signer of m other than p works on slot.
func (m *module) slotShared(p *PKCS11, slot uint) bool {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	for q := range m.users {
		if q != p && q.slot.Load() == uint64(slot)+1 {
			return true
		}
	}
	return false
}

func (m *module) release() {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.m, m.path)
	m.mu.Lock()
	m.closed = true
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
	m.mu.Unlock()
}

// reinit re-initialises the module unless someone already did since seen,
// or the last re-initialisation is too recent. It reports the current gen.
func (m *module) reinit(seen uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.gen, errReleased
	}
	if m.gen != seen || time.Since(m.lastReinit) < minReinit {
		return m.gen, nil
	}
	_ = m.ctx.Finalize()
	m.lastReinit = time.Now()
	m.gen++
	if err := m.ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return m.gen, fmt.Errorf("%w: %s: %w", ErrModule, m.path, err)
	}
	return m.gen, nil
}

func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// sessionLost reports Cryptoki errors after which the session, the login or
// the key handle cannot be trusted: the token or device went away, was reset,
// or the module lost its state. The signer reopens everything.
func sessionLost(err error) bool {
	var e pkcs11.Error
	if !errors.As(err, &e) {
		return false
	}
	switch uint(e) {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_GENERAL_ERROR,
		pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}
