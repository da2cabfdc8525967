package rcd

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// content is a fake web: URL -> body; fetched counts the fetches.
type content struct {
	body    map[string]string
	fetched map[string]int
}

func (c *content) fetch(_ context.Context, u string) ([]byte, error) {
	if c.fetched == nil {
		c.fetched = map[string]int{}
	}
	c.fetched[u]++
	b, ok := c.body[u]
	if !ok {
		return nil, errors.New("HTTP 404")
	}
	return []byte(b), nil
}

const jcard = `["vcard",[["version",{},"text","4.0"],["fn",{},"text","Example Bank"],["logo",{},"uri","https://brand.example/logo-small.png"]]]`

func web() *content {
	return &content{body: map[string]string{
		"https://brand.example/logo.png":       "PNG1",
		"https://brand.example/card.json":      jcard,
		"https://brand.example/logo-small.png": "PNG2",
	}}
}

func TestCompileResolveCheck(t *testing.T) {
	c, err := Compile(Config{Nam: "Example Bank", Icn: "https://brand.example/logo.png", Jcl: "https://brand.example/card.json", Crn: "Your card, \"fraud\" alert"})
	if err != nil {
		t.Fatal(err)
	}
	w := web()
	if err := c.Resolve(context.Background(), w.fetch); err != nil {
		t.Fatal(err)
	}
	p := c.Passport()
	if string(p.RCD) != `{"icn":"https://brand.example/logo.png","jcl":"https://brand.example/card.json","nam":"Example Bank"}` {
		t.Errorf("rcd %s", p.RCD)
	}
	if string(p.CRN) != `"Your card, \"fraud\" alert"` {
		t.Errorf("crn %s", p.CRN)
	}
	want := fmt.Sprintf(`{"/icn":"%s","/jcl":"%s","/jcl/1/2/3":"%s"}`, Digest([]byte("PNG1")), Digest([]byte(jcard)), Digest([]byte("PNG2")))
	if string(p.RCDI) != want {
		t.Errorf("rcdi\n got %s\nwant %s", p.RCDI, want)
	}
	if !strings.HasPrefix(Digest(nil), "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=") {
		t.Errorf("digest of nothing %s", Digest(nil))
	}

	d, err := Check(context.Background(), p.RCD, p.RCDI, "Your card, \"fraud\" alert", w.fetch)
	if err != nil {
		t.Fatal(err)
	}
	if d != (Display{Name: "Example Bank", CRN: "Your card, \"fraud\" alert", Icon: "https://brand.example/logo.png", JCard: "https://brand.example/card.json"}) {
		t.Errorf("display %+v", d)
	}
	// The logo changes after signing: the whole rcd fails.
	w.body["https://brand.example/logo.png"] = "PNG1 changed"
	if _, err := Check(context.Background(), p.RCD, p.RCDI, "", w.fetch); !errors.Is(err, ErrIntegrity) {
		t.Errorf("changed logo: %v", err)
	}
	w.body["https://brand.example/logo.png"] = "PNG1"
	// So does the logo inside the jCard.
	w.body["https://brand.example/logo-small.png"] = "other"
	if _, err := Check(context.Background(), p.RCD, p.RCDI, "", w.fetch); !errors.Is(err, ErrIntegrity) {
		t.Errorf("changed jCard logo: %v", err)
	}
	delete(w.body, "https://brand.example/logo-small.png")
	if _, err := Check(context.Background(), p.RCD, p.RCDI, "", w.fetch); !errors.Is(err, ErrFetch) {
		t.Errorf("jCard logo gone: %v", err)
	}
	// No rcdi: the name is shown, the links are not.
	d, err = Check(context.Background(), p.RCD, nil, "", w.fetch)
	if err != nil || d != (Display{Name: "Example Bank"}) {
		t.Errorf("without rcdi: %+v %v", d, err)
	}
}

func TestResolveFailureNamesTheURL(t *testing.T) {
	c, err := Compile(Config{Nam: "X", Icn: "https://brand.example/missing.png"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Resolve(context.Background(), web().fetch)
	if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "https://brand.example/missing.png") || !strings.Contains(err.Error(), "404") {
		t.Errorf("Resolve: %v", err)
	}
	if c.Passport().RCDI != nil {
		t.Error("rcdi written despite the failure")
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, c := range []Config{
		{},
		{Nam: "a\nb"},
		{Nam: strings.Repeat("x", MaxName+1)},
		{Nam: "x", Icn: "ftp://x/y"},
		{Nam: "x", Icn: "https://"},
		{Nam: "x", Icn: "https://a@x/y"},
		{Nam: "x", Jcl: "https://x/c.json", Jcd: []any{"vcard", []any{}}},
		{Nam: "x", Jcd: []any{"notvcard", []any{}}},
		{Nam: "x", Jcd: map[string]any{"a": 1}},
		{Nam: "x", Crn: "a\x00"},
	} {
		if _, err := Compile(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestInlineJCard(t *testing.T) {
	// As a YAML decoder gives it.
	jcd := []any{"vcard", []any{
		[]any{"fn", map[string]any{}, "text", "Example Bank"},
		[]any{"photo", map[string]any{"mediatype": "image/png"}, "uri", "https://brand.example/logo.png"},
	}}
	c, err := Compile(Config{Nam: "Example Bank", Jcd: jcd})
	if err != nil {
		t.Fatal(err)
	}
	w := web()
	if err := c.Resolve(context.Background(), w.fetch); err != nil {
		t.Fatal(err)
	}
	p := c.Passport()
	if !strings.Contains(string(p.RCD), `"jcd":["vcard",[["fn",{},"text","Example Bank"],["photo",{"mediatype":"image/png"},"uri","https://brand.example/logo.png"]]]`) {
		t.Errorf("rcd %s", p.RCD)
	}
	if string(p.RCDI) != `{"/jcd/1/1/3":"`+Digest([]byte("PNG1"))+`"}` {
		t.Errorf("rcdi %s", p.RCDI)
	}
	if _, err := Check(context.Background(), p.RCD, p.RCDI, "", w.fetch); err != nil {
		t.Fatal(err)
	}
	w.body["https://brand.example/logo.png"] = "x"
	if _, err := Check(context.Background(), p.RCD, p.RCDI, "", w.fetch); !errors.Is(err, ErrIntegrity) {
		t.Errorf("changed photo: %v", err)
	}
}

func TestMatchForms(t *testing.T) {
	body := []byte("content")
	s512 := sha512.Sum512(body)
	s384 := sha512.Sum384(body)
	good := []string{
		Digest(body),
		strings.TrimRight(Digest(body), "="),
		"sha512-" + base64.StdEncoding.EncodeToString(s512[:]),
		"sha384-" + base64.RawURLEncoding.EncodeToString(s384[:]),
	}
	for _, g := range good {
		if !Match(g, body) {
			t.Errorf("%s does not match", g)
		}
	}
	for _, b := range []string{"", "sha256", "md5-" + base64.StdEncoding.EncodeToString(s512[:16]), "sha256-!!!", "sha512-" + base64.StdEncoding.EncodeToString(s384[:])} {
		if Match(b, body) {
			t.Errorf("%q matches", b)
		}
	}
}

func TestCheckRefusesBadClaims(t *testing.T) {
	w := web()
	for _, c := range []struct{ rcd, rcdi string }{
		{`[]`, ``},
		{`{"icn":"https://brand.example/logo.png"}`, ``},
		{`{"nam":"x"}`, `[1]`},
		{`{"nam":"x"}`, `{"icn":"sha256-x"}`},
		{`{"nam":"x"}`, `{"/icn":"sha256-x"}`},
		{`{"nam":"x","icn":"javascript:alert(1)"}`, `{"/icn":"sha256-x"}`},
		{`{"nam":"x"}`, `{"/jcl/1/0/3":"sha256-x"}`},
	} {
		if _, err := Check(context.Background(), []byte(c.rcd), []byte(c.rcdi), "", w.fetch); !errors.Is(err, ErrClaims) {
			t.Errorf("%s %s: %v", c.rcd, c.rcdi, err)
		}
	}
}

// FuzzCheck feeds Check claims as a caller may send them: it must never
// panic, and a link it shows must be one whose content matched.
func FuzzCheck(f *testing.F) {
	w := web()
	f.Add([]byte(`{"nam":"x","icn":"https://brand.example/logo.png"}`), []byte(`{"/icn":"`+Digest([]byte("PNG1"))+`"}`))
	f.Add([]byte(`{"nam":"x","jcl":"https://brand.example/card.json"}`), []byte(`{"/jcl":"`+Digest([]byte(jcard))+`","/jcl/1/2/3":"`+Digest([]byte("PNG2"))+`"}`))
	f.Add([]byte(`{"nam":"x","jcd":["vcard",[["logo",{},"uri","https://brand.example/logo.png"]]]}`), []byte(`{"/jcd/1/0/3":"sha256-x"}`))
	f.Add([]byte(`{"nam":"x"}`), []byte(`{"/a~1b/~0":"sha256-"}`))
	f.Fuzz(func(t *testing.T, rcdJS, rcdiJS []byte) {
		d, err := Check(context.Background(), rcdJS, rcdiJS, "", w.fetch)
		if err != nil {
			return
		}
		if d.Name == "" {
			t.Fatal("passed without a name")
		}
		for _, u := range []string{d.Icon, d.JCard} {
			if u != "" && w.body[u] == "" {
				t.Fatalf("shows %q, which has no content", u)
			}
		}
	})
}
