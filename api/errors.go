package api

import (
	"errors"
	"net/http"
)

// Errors returned by New and the token functions.
var (
	ErrNoTokens  = errors.New("api: no API token file configured (required unless lab mode)")
	ErrTokenFile = errors.New("api: bad token file")
	ErrConfig    = errors.New("api: bad configuration")
)

// Message identifiers of ATIS-1000082 (section on error handling): the
// serviceException SVC4000..SVC4007 and the policyException POL4050 and
// POL5000, with their standard texts (%1, %2 are filled from "variables")
// and HTTP statuses.
type msgID uint8

const (
	svc4000 msgID = iota // missing request body
	svc4001              // missing mandatory parameter %1
	svc4002              // requested response body type %1 not supported
	svc4003              // resource not found
	svc4004              // unsupported request body type, expected %1
	svc4005              // invalid %1 parameter value: %2
	svc4006              // failed to parse message body: %1
	svc4007              // missing Content-Length
	pol4050              // method not allowed
	pol5000              // internal error / signer unavailable
)

type msgDef struct {
	id, text string
	status   int
	policy   bool
}

var msgs = [...]msgDef{
	svc4000: {"SVC4000", "Missing request body", http.StatusBadRequest, false},
	svc4001: {"SVC4001", "Missing mandatory parameter '%1'", http.StatusBadRequest, false},
	svc4002: {"SVC4002", "Requested response body type '%1' is not supported", http.StatusNotAcceptable, false},
	svc4003: {"SVC4003", "Requested resource was not found", http.StatusNotFound, false},
	svc4004: {"SVC4004", "Unsupported request body type, expected '%1'", http.StatusUnsupportedMediaType, false},
	svc4005: {"SVC4005", "Invalid '%1' parameter value: %2", http.StatusBadRequest, false},
	svc4006: {"SVC4006", "Failed to parse received message body: %1", http.StatusBadRequest, false},
	svc4007: {"SVC4007", "Missing mandatory Content-Length header", http.StatusLengthRequired, false},
	pol4050: {"POL4050", "Method not allowed", http.StatusMethodNotAllowed, true},
	pol5000: {"POL5000", "Internal Server Error. Please try again later", http.StatusInternalServerError, true},
}

// apiError is one error answer. status overrides the message's default
// HTTP status when non-zero (401 for token errors, 413 for an oversize body,
// 503 when no signer answered).
type apiError struct {
	msg    msgID
	status int
	vars   []string
}

func newErr(m msgID, vars ...string) *apiError { return &apiError{msg: m, vars: vars} }

func (e *apiError) withStatus(s int) *apiError { e.status = s; return e }

func (e *apiError) httpStatus() int {
	if e.status != 0 {
		return e.status
	}
	return msgs[e.msg].status
}

func (e *apiError) Error() string {
	d := msgs[e.msg]
	s := "api: " + d.id + " " + d.text
	for _, v := range e.vars {
		s += " [" + v + "]"
	}
	return s
}

// appendBody writes {"requestError":{"serviceException"|"policyException":
// {"messageId":..,"text":..,"variables":[..]}}}.
func (e *apiError) appendBody(b []byte) []byte {
	d := msgs[e.msg]
	b = append(b, `{"requestError":{"`...)
	if d.policy {
		b = append(b, "policyException"...)
	} else {
		b = append(b, "serviceException"...)
	}
	b = append(b, `":{"messageId":"`...)
	b = append(b, d.id...)
	b = append(b, `","text":`...)
	b = appendJSONString(b, d.text)
	b = append(b, `,"variables":[`...)
	for i, v := range e.vars {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, "]}}}"...)
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
