package spctoken

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
)

// Source errors: ErrUnavailable when the STI-PA could not be asked (network,
// 5xx), ErrRefused when it answered no (4xx, "status":"error").
var (
	ErrUnavailable = errors.New("spctoken: STI-PA unavailable")
	ErrRefused     = errors.New("spctoken: STI-PA refused the token request")
	ErrCredentials = errors.New("spctoken: STI-PA credentials file")
)

// Request is what a token is asked for.
type Request struct {
	TkValue     string // TkValue of the TNAuthList
	Fingerprint string // Fingerprint of the ACME account key
}

// Source obtains SPC tokens.
type Source interface {
	Token(ctx context.Context, r Request) (string, error)
}

// FileSource reads the token from a file that another tool keeps fresh
// (read again on every call; surrounding white space is dropped).
type FileSource struct{ Path string }

// Token implements Source.
func (f FileSource) Token(context.Context, Request) (string, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return "", fmt.Errorf("%w: token file: %w", ErrUnavailable, err)
	}
	if len(b) > MaxLen {
		return "", fmt.Errorf("%w: token file %s over %d bytes", ErrToken, f.Path, MaxLen)
	}
	return strings.TrimSpace(string(b)), nil
}

// Credentials are the STI-PA API user and password, read from a JSON file
// {"user_id": "...", "password": "..."} (mode 0600; never logged).
type Credentials struct {
	UserID   string `json:"user_id"`
	Password string `json:"password"`
}

// ReadCredentials reads and checks a credentials file.
func ReadCredentials(path string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: %s: want {\"user_id\":...,\"password\":...}", ErrCredentials, path)
	}
	if c.UserID == "" || c.Password == "" {
		return c, fmt.Errorf("%w: %s: user_id and password are required", ErrCredentials, path)
	}
	return c, nil
}

// APISource asks an STI-PA's token API (see the package documentation for
// the requests). It logs in when it has no access token and again once when
// the API answers 401.
type APISource struct {
	BaseURL         string // API root, e.g. https://sti-pa.example.net
	Account         string // account id in the token path (the SPC / OCN)
	CredentialsFile string
	Client          *http.Client // default http.DefaultClient

	mu     sync.Mutex
	access string
}

// maxBody bounds an STI-PA response.
const maxBody = 64 << 10

// Token implements Source.
func (a *APISource) Token(ctx context.Context, r Request) (string, error) {
	for attempt := 0; ; attempt++ {
		access, err := a.login(ctx, attempt > 0)
		if err != nil {
			return "", err
		}
		body, _ := json.Marshal(map[string]any{"atc": ATC{TkType: TkType, TkValue: r.TkValue, CA: false, Fingerprint: r.Fingerprint}})
		var out struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Token   string `json:"token"`
		}
		code, err := a.post(ctx, "/api/v1/account/"+url.PathEscape(a.Account)+"/token/", access, body, &out)
		if err != nil {
			return "", err
		}
		switch {
		case code == http.StatusUnauthorized && attempt == 0:
			continue // the access token expired: log in again, once
		case code >= 500:
			return "", fmt.Errorf("%w: token request: HTTP %d %s", ErrUnavailable, code, clip(out.Message))
		case code != http.StatusOK || out.Status != "success" || out.Token == "":
			return "", fmt.Errorf("%w: HTTP %d status %q: %s", ErrRefused, code, out.Status, clip(out.Message))
		}
		return out.Token, nil
	}
}

// login returns the access token, logging in when there is none or when
// fresh is set.
func (a *APISource) login(ctx context.Context, fresh bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.access != "" && !fresh {
		return a.access, nil
	}
	cr, err := ReadCredentials(a.CredentialsFile)
	if err != nil {
		return "", err
	}
	body, _ := json.Marshal(map[string]string{"userId": cr.UserID, "password": cr.Password})
	var out struct {
		AccessToken string `json:"accessToken"`
		Message     string `json:"message"`
	}
	code, err := a.post(ctx, "/api/v1/auth/login", "", body, &out)
	if err != nil {
		return "", err
	}
	switch {
	case code >= 500:
		return "", fmt.Errorf("%w: login: HTTP %d", ErrUnavailable, code)
	case code != http.StatusOK || out.AccessToken == "":
		return "", fmt.Errorf("%w: login refused: HTTP %d %s", ErrRefused, code, clip(out.Message))
	}
	a.access = out.AccessToken
	return a.access, nil
}

func (a *APISource) post(ctx context.Context, path, bearer string, body []byte, out any) (int, error) {
	u := strings.TrimSuffix(a.BaseURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, fmt.Errorf("%w: reading the answer: %w", ErrUnavailable, err)
	}
	_ = json.Unmarshal(b, out) // an error page leaves out empty; the status code decides
	return resp.StatusCode, nil
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
