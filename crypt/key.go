package crypt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

// IDSize is the length of a key id.
const IDSize = 8

// Key is an AES-256 key and its id. The zero Key is not valid.
type Key struct {
	id     [IDSize]byte
	secret [KeySize]byte
}

// ErrBadKey means key material is not 32 bytes, raw or as 64 hex digits.
var ErrBadKey = errors.New("crypt: a key is 32 bytes, raw or as 64 hex digits")

// idDomain separates key ids from any other use of a hash of the key.
const idDomain = "warren key id v1\x00"

// NewKey returns the Key for 32 bytes of key material.
func NewKey(secret []byte) (Key, error) {
	if len(secret) != KeySize {
		return Key{}, ErrBadKey
	}
	var k Key
	copy(k.secret[:], secret)
	if k.secret == ([KeySize]byte{}) {
		return Key{}, fmt.Errorf("%w (this one is all zeros)", ErrBadKey)
	}
	h := sha256.New()
	h.Write([]byte(idDomain))
	h.Write(k.secret[:])
	copy(k.id[:], h.Sum(nil))
	return k, nil
}

// ParseKey reads key material: exactly 32 bytes, or 64 hex digits with optional surrounding
// white space (a trailing newline).
func ParseKey(data []byte) (Key, error) {
	if len(data) == KeySize {
		return NewKey(data)
	}
	t := bytes.TrimSpace(data)
	if len(t) != 2*KeySize {
		return Key{}, ErrBadKey
	}
	var raw [KeySize]byte
	if _, err := hex.Decode(raw[:], t); err != nil {
		return Key{}, ErrBadKey
	}
	return NewKey(raw[:])
}

// LoadKeyFile reads a key file (see ParseKey).
func LoadKeyFile(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("crypt: read key: %w", err)
	}
	k, err := ParseKey(data)
	clear(data)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ID returns the key id as 16 hex digits: the first 8 bytes of SHA-256 of a fixed prefix and the
// key. Each sealed record carries the id of its key; ids are safe to log.
func (k Key) ID() string { return hex.EncodeToString(k.id[:]) }

// String returns the id only, so that a Key printed by mistake does not leak.
func (k Key) String() string { return "key " + k.ID() }

// GoString is String, for %#v.
func (k Key) GoString() string { return k.String() }
