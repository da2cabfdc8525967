package labsti

import (
	"crypto/ecdsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/spctoken"
	"github.com/shakenline/shakenline/tnauth"
)

// paAccount is a service provider admitted by the lab STI-PA.
type paAccount struct {
	account  string // the account id in the token path (the SPC)
	password string
	spc      string
	tn       tnauth.List // the TNAuthList of its tokens; {spc} when empty
}

// stiPA is the lab STI-PA's token API (see spctoken for the requests).
type stiPA struct {
	key      *ecdsa.PrivateKey
	cert     *x509.Certificate
	x5u      string
	ttl      time.Duration
	accounts map[string]paAccount // by user id
	now      func() time.Time
	fault    func() string
	log      *slog.Logger

	mu     sync.Mutex
	access map[string]accessGrant
	tokens int
}

type accessGrant struct {
	user    string
	expires time.Time
}

const accessTTL = time.Hour

func (pa *stiPA) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /sti-pa/api/v1/auth/login", pa.login)
	mux.HandleFunc("POST /sti-pa/api/v1/account/{account}/token/", pa.token)
	mux.HandleFunc("POST /sti-pa/api/v1/account/{account}/token", pa.token)
	mux.HandleFunc("GET /sti-pa/cert.pem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(labpki.EncodeCerts(pa.cert))
	})
}

func (pa *stiPA) down(w http.ResponseWriter) bool {
	if pa.fault() == FaultDown {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "error", "message": "lab fault: STI-PA down"})
		return true
	}
	return false
}

func (pa *stiPA) login(w http.ResponseWriter, r *http.Request) {
	if pa.down(w) {
		return
	}
	var in struct {
		UserID   string `json:"userId"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequest)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "message": "want {\"userId\",\"password\"}"})
		return
	}
	a, ok := pa.accounts[in.UserID]
	if !ok || subtle.ConstantTimeCompare([]byte(a.password), []byte(in.Password)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"status": "error", "message": "bad user id or password"})
		return
	}
	tok := randID() + randID()
	pa.mu.Lock()
	now := pa.now()
	for k, g := range pa.access {
		if now.After(g.expires) {
			delete(pa.access, k)
		}
	}
	pa.access[tok] = accessGrant{user: in.UserID, expires: now.Add(accessTTL)}
	pa.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"accessToken": tok, "refreshToken": randID()})
}

// token issues an SPC token for the logged-in account's own SPC, bound to
// the fingerprint the request names.
func (pa *stiPA) token(w http.ResponseWriter, r *http.Request) {
	if pa.down(w) {
		return
	}
	refuse := func(status int, msg string) {
		pa.log.Info("lab-sti: SPC token refused", "account", r.PathValue("account"), "reason", msg)
		writeJSON(w, status, map[string]string{"status": "error", "message": msg})
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	pa.mu.Lock()
	g, ok := pa.access[bearer]
	pa.mu.Unlock()
	if !ok || pa.now().After(g.expires) {
		refuse(http.StatusUnauthorized, "log in first")
		return
	}
	a := pa.accounts[g.user]
	if r.PathValue("account") != a.account {
		refuse(http.StatusForbidden, "not your account")
		return
	}
	if pa.fault() == FaultRefuse {
		refuse(http.StatusForbidden, "lab fault: token refused")
		return
	}
	var in struct {
		ATC spctoken.ATC `json:"atc"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequest)).Decode(&in); err != nil {
		refuse(http.StatusBadRequest, "want {\"atc\":{...}}")
		return
	}
	if in.ATC.TkType != spctoken.TkType || in.ATC.CA {
		refuse(http.StatusBadRequest, "tktype must be TNAuthList and ca false")
		return
	}
	der, _, err := spctoken.DecodeTkValue(in.ATC.TkValue)
	tl := a.tn
	if tl.Empty() {
		tl = tnauth.List{SPCs: []string{a.spc}}
	}
	want, _ := tnauth.Marshal(tl)
	if err != nil || string(der) != string(want) {
		refuse(http.StatusForbidden, "tkvalue is not this account's TNAuthList (SPC "+a.spc+")")
		return
	}
	if !strings.HasPrefix(in.ATC.Fingerprint, "SHA256 ") {
		refuse(http.StatusBadRequest, "fingerprint: want \"SHA256 XX:...\"")
		return
	}
	now := pa.now()
	c := spctoken.Claims{Iat: now.Unix(), Exp: now.Add(pa.ttl).Unix(), Iss: "Shakenline Lab STI-PA", Jti: randID(),
		ATC: spctoken.ATC{TkType: spctoken.TkType, TkValue: in.ATC.TkValue, Fingerprint: in.ATC.Fingerprint}}
	tok, err := spctoken.Sign(c, pa.key, pa.x5u)
	if err != nil {
		refuse(http.StatusInternalServerError, err.Error())
		return
	}
	pa.mu.Lock()
	pa.tokens++
	pa.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"status": "success",
		"message": "SPC token for spc: " + a.spc + " is created successfully", "token": tok})
}
