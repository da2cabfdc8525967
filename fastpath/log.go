package fastpath

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// logKey names a condition the fast path logs about.
type logKey int

const (
	logHeartbeat logKey = iota
	logInternalError
	logMalformedRequest
	logMalformedResponse
	logReinject
	logStaleDate
	logBadDate
	logDateReplaced
	logFraming
	logConnLimit
	logConnect
	logTLSHandshake
	nLogKeys
)

// logLimiter lets a condition be logged the first time it happens and then
// at most once a minute, with the number of occurrences in between, so that
// a flood of bad packets cannot flood the log (each case also has a
// counter). allow is lock-free; callers build their log arguments only when
// it says yes, so a suppressed line costs no allocation.
type logLimiter struct {
	st [nLogKeys]struct {
		next       atomic.Int64 // unix ns before which the key stays quiet
		suppressed atomic.Int64
	}
}

const logEvery = time.Minute

// allow reports whether a line for k may be written now, and how many were
// suppressed since the last one.
func (l *logLimiter) allow(k logKey) (bool, int64) {
	st := &l.st[k]
	now := time.Now().UnixNano()
	n := st.next.Load()
	if now < n || !st.next.CompareAndSwap(n, now+int64(logEvery)) {
		st.suppressed.Add(1)
		return false, 0
	}
	return true, st.suppressed.Swap(0)
}

// gnetLogger routes gnet's own log lines into slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
