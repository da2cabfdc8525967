package spctoken_test

import (
	"testing"
	"time"

	"github.com/shakenline/shakenline/spctoken"
)

// FuzzParse: any input is refused with an error or parsed; a parsed token
// goes through Check and VerifySignature without a panic.
func FuzzParse(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjEsImF0YyI6eyJ0a3R5cGUiOiJUTkF1dGhMaXN0IiwidGt2YWx1ZSI6Ik1BaWdCaFlFT0RFNFNBPT0ifX0." +
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := spctoken.Parse(s)
		if err != nil {
			return
		}
		_ = tok.Check(spctoken.Want{Now: time.Unix(0, 0)})
		_ = tok.VerifySignature(nil)
		_ = tok.Redacted()
		_, _, _ = spctoken.DecodeTkValue(tok.Claims.ATC.TkValue)
	})
}
