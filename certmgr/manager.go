package certmgr

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
	"github.com/shakenline/shakenline/verify"
)

// Config configures a Manager. Zero durations take the defaults shown.
type Config struct {
	Directory  string       // ACME directory URL of the STI-CA
	HTTPClient *http.Client // for the STI-CA (and, given to the Source, the STI-PA)
	AccountKey crypto.Signer
	Contact    []string // ACME account contact URLs (mailto:...)

	SPC string // the provider's service provider code: the TNAuthList {SPC}
	// TNAuthList, when not empty, is the certificate's TNAuthList instead
	// of {SPC} (TN ranges of a delegate certificate); SPC still names the
	// account and the subject.
	TNAuthList   tnauth.List
	Organization string // subject O of the CSR
	Country      string // subject C of the CSR
	Tokens       spctoken.Source

	Trust          *x509.CertPool // an issued chain must end in one of these anchors
	Publisher      Publisher
	PublishURL     string        // x5u of a certificate: PublishURL + name + ".pem"
	Fetch          verify.Config // how the published copy is fetched back (verify.FetchX5U)
	PublishTimeout time.Duration // wait for the published copy, default 2m

	RenewBefore time.Duration // renew this long before expiry; default a third of the lifetime
	RetryMin    time.Duration // first retry after a failure, default 30s
	RetryMax    time.Duration // longest retry interval, default 1h (and never more than a tenth of the lifetime)
	RetireAfter time.Duration // the old credential stays open and published this long after a switch, default 70s
	Attempt     time.Duration // bound of one attempt, default 5m

	StateDir string     // state.json, certs/, keys/ (created 0700)
	Chain    hsm.Config // the signer chain: its links are moved to each new key
	KeyLabel string     // CKA_LABEL of keys generated in a token, default "shakenline-sti"

	// OnSwitch is called after each switch, old first (nil at the first).
	OnSwitch func(old, cur *credential.Credential)
	Logger   *slog.Logger
	Now      func() time.Time
}

// Manager obtains, renews and switches the signing credential.
type Manager struct {
	cfg     Config
	client  *acme.Client
	plan    *plan
	tnList  tnauth.List
	tnDER   []byte
	tkvalue string
	log     *slog.Logger
	now     func() time.Time
	kick    chan struct{}

	// solve answers authorizations without a tkauth-01 challenge (tests
	// of the common ACME path against a CA for DNS identifiers).
	solve func(context.Context, *acme.Client, acme.Account, acme.Authorization) error

	mu       sync.Mutex
	st       state
	pending  *issued
	failures int
	status   Status
	made     map[*credential.Credential]*record
}

// record is a credential certmgr made, as persisted.
type record struct {
	Name  string    `json:"name"`
	URL   string    `json:"url"`
	Key   keyRecord `json:"key"`
	Until time.Time `json:"until,omitzero"` // retiring: unpublished and its key removed then
}

type state struct {
	Current  *record  `json:"current,omitempty"`
	Retiring []record `json:"retiring,omitempty"`
}

// Status is the renewal state for /status and logs.
type Status struct {
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	ErrorStage  string    `json:"errorStage,omitempty"`
	Failures    int       `json:"consecutiveFailures"`
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	X5U         string    `json:"x5u,omitempty"`
	lastTry     time.Time
}

// New checks cfg and reads the state directory. It contacts nobody.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.Directory == "":
		return nil, errors.New("certmgr: the ACME directory URL is required")
	case cfg.AccountKey == nil:
		return nil, errors.New("certmgr: an account key is required")
	case cfg.SPC == "":
		return nil, errors.New("certmgr: the SPC is required")
	case cfg.Tokens == nil:
		return nil, errors.New("certmgr: an SPC token source is required")
	case cfg.Trust == nil:
		return nil, errors.New("certmgr: trust anchors for the issued chain are required")
	case cfg.Publisher == nil || cfg.PublishURL == "":
		return nil, errors.New("certmgr: a publisher and the publish URL are required")
	case cfg.StateDir == "":
		return nil, errors.New("certmgr: a state directory is required")
	}
	if !strings.HasSuffix(cfg.PublishURL, "/") {
		cfg.PublishURL += "/"
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 2 * time.Minute
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 30 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Hour
	}
	if cfg.RetireAfter <= 0 {
		cfg.RetireAfter = 70 * time.Second
	}
	if cfg.Attempt <= 0 {
		cfg.Attempt = 5 * time.Minute
	}
	if cfg.KeyLabel == "" {
		cfg.KeyLabel = "shakenline-sti"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "acme"), now: cfg.Now, kick: make(chan struct{}, 1),
		made: map[*credential.Credential]*record{}}
	m.tnList = tnauth.List{SPCs: []string{cfg.SPC}}
	if !cfg.TNAuthList.Empty() {
		m.tnList = cfg.TNAuthList
	}
	var err error
	if m.tnDER, err = tnauth.Marshal(m.tnList); err != nil {
		return nil, fmt.Errorf("certmgr: TNAuthList of SPC %q: %w", cfg.SPC, err)
	}
	m.tkvalue, _ = spctoken.TkValue(m.tnList)
	if m.plan, err = newPlan(cfg.Chain, filepath.Join(cfg.StateDir, "keys"), cfg.KeyLabel); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "certs"), 0o700); err != nil {
		return nil, fmt.Errorf("certmgr: %w", err)
	}
	b, err := os.ReadFile(m.statePath())
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &m.st); err != nil {
			return nil, fmt.Errorf("certmgr: %s: %w", m.statePath(), err)
		}
	case !os.IsNotExist(err):
		return nil, fmt.Errorf("certmgr: %w", err)
	}
	m.client = &acme.Client{Directory: cfg.Directory, HTTPClient: cfg.HTTPClient, UserAgent: "shakenline",
		PollInterval: 250 * time.Millisecond, PollTimeout: time.Minute}
	registerMetrics()
	return m, nil
}

func (m *Manager) statePath() string { return filepath.Join(m.cfg.StateDir, "state.json") }

func (m *Manager) certPath(name string) string {
	return filepath.Join(m.cfg.StateDir, "certs", name+".pem")
}

func (m *Manager) saveState() error {
	b, err := json.MarshalIndent(m.st, "", "  ")
	if err != nil {
		return fmt.Errorf("certmgr: %w", err)
	}
	return writeFileAtomic(m.statePath(), b, 0o600)
}

func (m *Manager) nextName() string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return "shaken-" + m.cfg.SPC + "-" + m.now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// Load returns the credential of the state directory when its certificate
// is valid now, with its signers open (ctx bounds their life), and
// publishes it and the retiring ones again. It returns nil, nil when there
// is none to use: the caller falls back to the configured cert or Obtain.
func (m *Manager) Load(ctx context.Context) (*credential.Credential, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	keep := m.st.Retiring[:0]
	for _, r := range m.st.Retiring {
		if now.Before(r.Until) {
			if chain, err := m.readChain(r.Name); err == nil {
				_ = m.cfg.Publisher.Put(r.Name+".pem", encodeChain(chain), chain[0].NotAfter)
				keep = append(keep, r)
				continue
			}
		}
		m.finish(r)
	}
	m.st.Retiring = keep
	cur := m.st.Current
	if cur == nil {
		return nil, m.saveState()
	}
	chain, err := m.readChain(cur.Name)
	if err == nil && (now.Before(chain[0].NotBefore) || !now.Before(chain[0].NotAfter)) {
		err = fmt.Errorf("certificate %s expired at %s", cur.Name, chain[0].NotAfter.UTC().Format(time.RFC3339))
	}
	var cred *credential.Credential
	if err == nil {
		cred, err = m.build(ctx, cur, chain)
	}
	if err != nil {
		m.log.Warn("acme: the certificate in the state directory cannot be used; a new one is needed", "err", err)
		m.finish(*cur)
		m.st.Current = nil
		return nil, m.saveState()
	}
	if err := m.cfg.Publisher.Put(cur.Name+".pem", encodeChain(chain), chain[0].NotAfter); err != nil {
		m.log.Warn("acme: republishing the current certificate failed", "err", err)
	}
	m.status.X5U = cur.URL
	return cred, m.saveState()
}

func (m *Manager) readChain(name string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(m.certPath(name))
	if err != nil {
		return nil, err
	}
	return verify.ParseChain(b)
}

// build opens the signer chain on r's key and makes the credential.
func (m *Manager) build(ctx context.Context, r *record, chain []*x509.Certificate) (*credential.Credential, error) {
	hc, soft, err := m.plan.chainConfig(r.Key)
	closeSoft := func() {
		for _, s := range soft {
			_ = s.Close()
		}
	}
	if err != nil {
		closeSoft()
		return nil, err
	}
	c, err := hsm.New(ctx, hc, chain[0])
	if err != nil {
		closeSoft()
		return nil, err
	}
	b, err := passport.NewBuilder(r.URL)
	if err != nil {
		_ = c.Close()
		closeSoft()
		return nil, err
	}
	cred, err := credential.New(c, b, chain)
	if err != nil {
		_ = c.Close()
		closeSoft()
		return nil, err
	}
	cred.Close = func() { _ = c.Close(); closeSoft() }
	m.made[cred] = r
	return cred, nil
}

// KeyFile is the software key file of a credential this Manager made (""
// for a key in a token or another credential): for a lab peer that signs
// with the same key outside the appliance.
func (m *Manager) KeyFile(c *credential.Credential) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.made[c]; r != nil {
		return r.Key.File
	}
	return ""
}

// Obtain gets the first credential, retrying with backoff until it
// succeeds or ctx ends: for a start with no usable certificate. The
// credential is recorded as the current one; the caller puts it in the
// Holder it gives Run.
func (m *Manager) Obtain(ctx context.Context) (*credential.Credential, error) {
	for {
		cred, err := m.attempt(ctx, nil)
		if err == nil {
			m.mu.Lock()
			m.st.Current = m.made[cred]
			m.status.X5U = m.st.Current.URL
			err := m.saveState()
			m.mu.Unlock()
			return cred, err
		}
		d := m.backoff(0)
		m.setNext(m.now().Add(d))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
}

// attempt is one renewal up to a credential ready to use (not yet in
// use): obtain (or the pending certificate of a failed publication),
// publish and see it published, open its signers.
func (m *Manager) attempt(ctx context.Context, cur *credential.Credential) (*credential.Credential, error) {
	start := m.now()
	actx, cancel := context.WithTimeout(ctx, m.cfg.Attempt)
	defer cancel()
	m.mu.Lock()
	iss := m.pending
	m.pending = nil
	m.mu.Unlock()
	if iss != nil && !m.now().Before(iss.chain[0].NotAfter.Add(-m.renewBefore(iss.chain[0]))) {
		m.dropIssued(iss)
		iss = nil
	}
	var err error
	if iss == nil {
		if iss, err = m.obtain(actx); err != nil {
			return nil, m.failed(ctx, err, cur)
		}
		if err := writeFileAtomic(m.certPath(iss.name), iss.pem, 0o644); err != nil {
			m.dropIssued(iss)
			return nil, m.failed(ctx, fail(StagePublish, err), cur)
		}
	}
	iss.url = m.cfg.PublishURL + iss.name + ".pem"
	if err := m.publish(actx, iss); err != nil {
		m.mu.Lock()
		m.pending = iss // published next time without a new order
		m.mu.Unlock()
		return nil, m.failed(ctx, fail(StagePublish, err), cur)
	}
	r := &record{Name: iss.name, URL: iss.url, Key: iss.key.rec}
	m.mu.Lock()
	cred, err := m.build(ctx, r, iss.chain)
	m.mu.Unlock()
	if err != nil {
		_ = m.cfg.Publisher.Remove(iss.name + ".pem")
		m.dropIssued(iss)
		return nil, m.failed(ctx, fail(StageSwitch, err), cur)
	}
	m.succeeded(iss, m.now().Sub(start))
	return cred, nil
}

func (m *Manager) dropIssued(iss *issued) {
	if err := m.plan.destroy(iss.key.rec); err != nil {
		m.log.Warn("acme: could not remove an unused key", "err", err)
	}
	_ = os.Remove(m.certPath(iss.name))
}

// publish puts the chain at its x5u and waits until the copy fetched back
// through the verifiers' client is byte for byte what was put.
func (m *Manager) publish(ctx context.Context, iss *issued) error {
	if err := m.cfg.Publisher.Put(iss.name+".pem", iss.pem, iss.chain[0].NotAfter); err != nil {
		return err
	}
	deadline := m.now().Add(m.cfg.PublishTimeout)
	var last error
	for {
		got, err := verify.FetchX5U(ctx, m.cfg.Fetch, iss.url)
		switch {
		case err != nil:
			last = err
		case !bytes.Equal(got, iss.pem):
			last = fmt.Errorf("%s serves other content than the certificate (%d bytes, want %d)", iss.url, len(got), len(iss.pem))
		default:
			return nil
		}
		if !m.now().Before(deadline) {
			return fmt.Errorf("not fetchable and identical at %s after %v: %w", iss.url, m.cfg.PublishTimeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Switch makes cred the credential in use in h (cred must come from this
// Manager), persists it and schedules the old one's retirement.
func (m *Manager) switchTo(h *credential.Holder, cred *credential.Credential) {
	old := h.Swap(cred)
	m.mu.Lock()
	now := m.now()
	r := m.made[cred]
	if cur := m.st.Current; cur != nil && (old == nil || m.made[old] != nil) {
		ret := *cur
		ret.Until = now.Add(m.cfg.RetireAfter)
		m.st.Retiring = append(m.st.Retiring, ret)
	}
	m.st.Current = r
	m.status.X5U = r.URL
	if err := m.saveState(); err != nil {
		m.log.Error("acme: saving the state failed; a restart would use the previous certificate", "err", err)
	}
	m.mu.Unlock()
	if old != nil {
		until := now.Add(m.cfg.RetireAfter)
		go func() {
			t := time.NewTimer(time.Until(until))
			defer t.Stop()
			<-t.C
			if old.Close != nil {
				old.Close()
			}
			m.mu.Lock()
			delete(m.made, old)
			m.mu.Unlock()
		}()
	}
	m.log.Info("acme: switched to the new certificate", "x5u", r.URL, "not_after", cred.Leaf().NotAfter.UTC().Format(time.RFC3339),
		"retire_previous_at", now.Add(m.cfg.RetireAfter).UTC().Format(time.RFC3339))
	if m.cfg.OnSwitch != nil {
		m.cfg.OnSwitch(old, cred)
	}
}

// retireDue unpublishes the retiring certificates whose time has come and
// removes their keys; it returns when the next one is due.
func (m *Manager) retireDue() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var next time.Time
	keep := m.st.Retiring[:0]
	changed := false
	for _, r := range m.st.Retiring {
		if now.Before(r.Until) {
			keep = append(keep, r)
			if next.IsZero() || r.Until.Before(next) {
				next = r.Until
			}
			continue
		}
		m.finish(r)
		changed = true
	}
	m.st.Retiring = keep
	if changed {
		if err := m.saveState(); err != nil {
			m.log.Error("acme: saving the state failed", "err", err)
		}
	}
	return next
}

// finish unpublishes r and removes its key and certificate file.
func (m *Manager) finish(r record) {
	if err := m.cfg.Publisher.Remove(r.Name + ".pem"); err != nil {
		m.log.Warn("acme: unpublishing a retired certificate failed", "name", r.Name, "err", err)
	}
	if err := m.plan.destroy(r.Key); err != nil {
		m.log.Warn("acme: removing a retired key failed", "name", r.Name, "err", err)
	}
	_ = os.Remove(m.certPath(r.Name))
	m.log.Info("acme: retired certificate unpublished and its key removed", "name", r.Name)
}

// Status reports the renewal state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Failures = m.failures
	return s
}

func (m *Manager) failed(ctx context.Context, err error, cur *credential.Credential) error {
	if ctx.Err() != nil {
		// Stopping (the appliance shuts down): not a renewal failure.
		m.log.Info("acme: renewal interrupted by shutdown", "err", err)
		return err
	}
	stage := Stage(err)
	countError(stage)
	m.mu.Lock()
	m.failures++
	m.status.LastError, m.status.ErrorStage, m.status.lastTry = err.Error(), stage, m.now()
	n := m.failures
	m.mu.Unlock()
	args := []any{"stage", stage, "err", err, "consecutive_failures", n}
	if cur != nil {
		args = append(args, "current_not_after", cur.Leaf().NotAfter.UTC().Format(time.RFC3339), "x5u", cur.X5U())
	}
	m.log.Error("acme: certificate renewal failed; signing continues with the current certificate", args...)
	return err
}

func (m *Manager) succeeded(iss *issued, took time.Duration) {
	countOK()
	now := m.now()
	m.mu.Lock()
	m.failures = 0
	m.status.LastSuccess, m.status.LastError, m.status.ErrorStage, m.status.lastTry = now, "", "", now
	m.mu.Unlock()
	setLastSuccess(now)
	m.log.Info("acme: certificate obtained, validated and published", "x5u", iss.url, "serial", iss.chain[0].SerialNumber.Text(16),
		"not_after", iss.chain[0].NotAfter.UTC().Format(time.RFC3339), "took", took.Round(time.Millisecond))
}

func (m *Manager) setNext(t time.Time) {
	m.mu.Lock()
	m.status.NextAttempt = t
	m.mu.Unlock()
	setNextAttempt(t)
}

func pemEncode(w io.Writer, der []byte) error {
	return pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der})
}
