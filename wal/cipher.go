package wal

import (
	"errors"
	"fmt"
)

// ErrCipher means the log's Cipher could not open a data payload: a wrong or missing key, or a
// record that fails authentication. The error is a *CipherError, which also wraps the Cipher's
// own error. The log goes out of service as a corrupt one does, and nothing on disk changes:
// opening a log checks checksums only, so the tail repair never cuts off a record whose
// checksum is right but whose payload fails to open; once the right key is configured the log
// opens and replays normally.
var ErrCipher = errors.New("wal: cannot open sealed payload")

// CipherError reports a payload that the log's Cipher refused. It wraps ErrCipher and the
// Cipher's error.
type CipherError struct {
	Log    string // log name
	Offset uint64 // offset of the record
	Err    error  // what Cipher.Open returned
}

func (e *CipherError) Error() string {
	return fmt.Sprintf("wal: log %q offset %d: cannot open sealed payload: %v", e.Log, e.Offset, e.Err)
}

// Unwrap makes errors.Is(err, ErrCipher) true, and errors.Is/As see the Cipher's error.
func (e *CipherError) Unwrap() []error { return []error{ErrCipher, e.Err} }

// cipherFor returns the Cipher of the log called name: Config.CipherFor's when set, else
// Config.Cipher. It is called each time a log is opened.
func (m *Manager) cipherFor(name string) Cipher {
	if f := m.cfg.CipherFor; f != nil {
		return f(name)
	}
	return m.cfg.Cipher
}

// openFailed puts the log out of service when err is a *CipherError from openPayload, and
// returns the error to report. The caller must not hold l.mu.
func (l *Log) openFailed(err error) error {
	var ce *CipherError
	if errors.As(err, &ce) {
		return l.fail(err)
	}
	return err
}
