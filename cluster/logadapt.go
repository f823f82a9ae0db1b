package cluster

import (
	"bytes"
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// logWriter turns the line-oriented logs of serf, memberlist and raft into zerolog events,
// keeping their level: "[WARN]" lines are warnings, "[ERROR]" errors, the rest debug (they are
// chatty at info).
type logWriter struct {
	log       zerolog.Logger
	component string
}

func (w logWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	lvl := zerolog.DebugLevel
	switch {
	case bytes.Contains(line, []byte("[ERR")):
		lvl = zerolog.ErrorLevel
	case bytes.Contains(line, []byte("[WARN")):
		lvl = zerolog.WarnLevel
	}
	w.log.WithLevel(lvl).Str("component", w.component).Msg(string(line))
	return len(p), nil
}

func stdLogger(l zerolog.Logger, component string) *log.Logger {
	return log.New(logWriter{l, component}, "", 0)
}

func hcLogger(l zerolog.Logger, component string) hclog.Logger {
	lvl := hclog.Info
	if l.GetLevel() <= zerolog.DebugLevel {
		lvl = hclog.Debug
	}
	var out io.Writer = logWriter{l, component}
	return hclog.New(&hclog.LoggerOptions{Name: component, Output: out, Level: lvl, DisableTime: true})
}
