package main

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// newLogger is the root logger writing to w: JSON lines, or console text coloured only when w is
// a terminal (escape codes in a log file or a journal are noise).
func newLogger(w io.Writer, jsonLines bool) zerolog.Logger {
	if jsonLines {
		return zerolog.New(w)
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)})
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
