package hsm

import (
	"errors"
	"fmt"
	"time"

	"github.com/miekg/pkcs11"
)

// install makes tk current. It closes nothing: the sessions of the token
// it replaces were closed all at once by closeLost, or died with a module
// re-initialisation. Called with mu held (or before p is shared).
func (p *PKCS11) install(tk *token) {
	p.last = tk
	p.slot.Store(uint64(tk.slot) + 1)
	p.tok.Store(tk)
	p.live.Store(tk.gen)
}

// lost marks tk dead after err and starts recovery once.
func (p *PKCS11) lost(tk *token, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tok.Load() != tk {
		return
	}
	p.tok.Store(nil)
	p.live.Store(0)
	p.setErr(err)
	p.startRecovery()
}

// drainWait bounds how long recovery waits for calls still using the lost
// token's handles (a call hung in the device keeps it waiting that long).
const drainWait = time.Second

// closeLost ends the lost token's sessions before new ones are opened.
// After a device reset the token may hand the old session numbers out
// again, so an old handle is never closed (or used) one at a time: it could
// name a new session by then. closeLost first waits, at most drainWait, for
// the calls that may still use old handles (signBatch counts them in
// inflight; a hung one is left behind, and its batch stops at the next
// digest, see shk_sign), then closes every session of the application on
// the slot with C_CloseAllSessions, which also drops the login. It closes
// nothing when the module was re-initialised meanwhile (the handles died
// with it) or when another signer of this process uses the same slot (its
// sessions would go too; the old ones are then left to the token).
func (p *PKCS11) closeLost() {
	deadline := time.Now().Add(drainWait)
	for p.inflight.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-p.done:
			return
		case <-time.After(time.Millisecond):
		}
	}
	p.mu.Lock()
	last := p.last
	p.last = nil
	p.mu.Unlock()
	if last == nil {
		return
	}
	m := p.mod
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed || m.gen != last.modGen || m.slotShared(p, last.slot) {
		return
	}
	_ = m.ctx.CloseAllSessions(last.slot)
}

func (p *PKCS11) startRecovery() {
	if p.recovering || p.stopped {
		return
	}
	p.recovering = true
	go p.recover()
}

// refresh rediscovers the token after the module was re-initialised by
// someone else.
func (p *PKCS11) refresh(old *token) (*token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.tok.Load()
	if cur == nil {
		return nil, ErrSessionLost
	}
	p.mod.mu.RLock()
	gen := p.mod.gen
	p.mod.mu.RUnlock()
	if cur != old && cur.modGen == gen {
		return cur, nil
	}
	tk, err := p.discover()
	if err != nil {
		p.tok.Store(nil)
		p.setErr(err)
		p.startRecovery()
		return nil, fmt.Errorf("%w: %w", ErrSessionLost, err)
	}
	p.install(tk)
	return tk, nil
}

// recover runs until the token is back, with exponential backoff.
func (p *PKCS11) recover() {
	p.closeLost()
	backoff := p.opt.ReopenMin
	t := time.NewTimer(backoff)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.mod.mu.RLock()
		seen := p.mod.gen
		p.mod.mu.RUnlock()
		tk, err := p.discover()
		// A module may keep what it read of a token: SoftHSM does not see
		// a user PIN set by another process until re-initialised.
		if err != nil && (errors.Is(err, ErrTokenNotFound) || sessionLost(err) || isCode(err, pkcs11.CKR_USER_PIN_NOT_INITIALIZED)) {
			if _, rerr := p.mod.reinit(seen); rerr != nil {
				err = rerr
			} else {
				tk, err = p.discover()
			}
		}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		if err == nil {
			p.install(tk)
			p.recovering = false
			p.mu.Unlock()
			return
		}
		p.setErr(err)
		if pinRefused(err) || errors.Is(err, ErrKeyMismatch) {
			// Retrying a wrong PIN would lock the token; a different key
			// must never sign. Stay down until restarted. A token being
			// provisioned again (no user PIN yet: C_InitToken and
			// C_InitPIN are two steps) counts no attempt: keep trying.
			p.stopped = true
			p.recovering = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		backoff = min(2*backoff, p.opt.ReopenMax)
		t.Reset(backoff)
	}
}

// pinRefused reports a login the token refused because of the PIN itself:
// retrying it would count against the token's PIN attempts.
func pinRefused(err error) bool {
	if !errors.Is(err, ErrLogin) {
		return false
	}
	var e pkcs11.Error
	if !errors.As(err, &e) {
		return true
	}
	switch uint(e) {
	case pkcs11.CKR_USER_PIN_NOT_INITIALIZED, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_TOKEN_NOT_PRESENT:
		return false
	}
	return true
}
