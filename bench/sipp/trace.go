package sipp

import (
	"bufio"
	"bytes"
	"os"
	"strings"
)

// ReadInvites is TraceInvites of the message log at path.
func ReadInvites(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return TraceInvites(b), nil
}

// TraceInvites returns the INVITEs of a SIPp message log (sipp -trace_msg
// -message_file FILE), each up to and including the blank line after its
// headers (the body is left out).
func TraceInvites(trace []byte) [][]byte {
	var out [][]byte
	for _, blk := range bytes.Split(trace, []byte("\nINVITE "))[1:] {
		msg := append([]byte("INVITE "), blk...)
		if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
			msg = msg[:i+4]
		} else if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
			msg = msg[:i+2]
		}
		out = append(out, msg)
	}
	return out
}

// HeaderValues returns the values of every header line of msg named name
// (case-insensitive, compact forms not expanded), trimmed.
func HeaderValues(msg []byte, name string) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(msg))
	sc.Buffer(make([]byte, 0, 65536), 65536)
	for sc.Scan() {
		n, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}
