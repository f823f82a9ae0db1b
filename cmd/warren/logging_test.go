package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Console text written to a file (or a pipe, a journal) carries no ANSI colour codes.
func TestNewLogger_NoColourWhenNotATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "warren.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log := newLogger(f, false)
	log.Info().Str("addr", "127.0.0.1:5672").Msg("amqp listening")
	log.Error().Msg("disk alarm")
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "\x1b[") {
		t.Fatalf("escape codes in the log file: %q", data)
	}
	if !strings.Contains(string(data), "amqp listening") || !strings.Contains(string(data), "addr=127.0.0.1:5672") {
		t.Fatalf("log file: %q", data)
	}
}
