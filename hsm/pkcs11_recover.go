package hsm

import (
	"errors"
	"fmt"
	"time"
)

// install makes tk current and closes the previous anchor session when its
// handle is still from the current module generation. Called with mu held.
func (p *PKCS11) install(tk *token) {
	if old := p.last; old != nil && old != tk {
		p.mod.mu.RLock()
		if old.modGen == p.mod.gen {
			_ = p.mod.ctx.CloseSession(old.anchor)
		}
		p.mod.mu.RUnlock()
	}
	p.last = tk
	p.tok.Store(tk)
}

// lost marks tk dead after err and starts recovery once.
func (p *PKCS11) lost(tk *token, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tok.Load() != tk {
		return
	}
	p.tok.Store(nil)
	p.setErr(err)
	p.startRecovery()
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
		if err != nil && (errors.Is(err, ErrTokenNotFound) || sessionLost(err)) {
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
		if errors.Is(err, ErrLogin) || errors.Is(err, ErrKeyMismatch) {
			// Retrying a wrong PIN would lock the token; a different key
			// must never sign. Stay down until restarted.
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
