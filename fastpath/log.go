package fastpath

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// logLimiter logs a condition the first time it happens and then at most
// once a minute, with the number of occurrences in between, so that a flood
// of bad packets cannot flood the log (each case also has a counter).
type logLimiter struct {
	log  *slog.Logger
	mu   sync.Mutex // taken only on the (rare) error paths
	last map[string]*limitState
}

type limitState struct {
	at         time.Time
	suppressed int
}

const logEvery = time.Minute

func (l *logLimiter) warn(key, msg string, args ...any) {
	l.mu.Lock()
	if l.last == nil {
		l.last = map[string]*limitState{}
	}
	st, ok := l.last[key]
	if !ok {
		st = &limitState{}
		l.last[key] = st
	}
	now := time.Now()
	if ok && now.Sub(st.at) < logEvery {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	n := st.suppressed
	st.at, st.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	l.log.Warn(msg, args...)
}

// gnetLogger routes gnet's own log lines into slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
