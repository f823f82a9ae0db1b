package cluster

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// KeyLen is the length of a cluster key: 32 random bytes (AES-256 for gossip, HMAC-SHA256 for
// the node-to-node handshake).
const KeyLen = 32

// LoadKey reads a cluster key file: 32 raw bytes, or 64 hex digits (surrounding white space
// ignored).
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}
	if len(b) == KeyLen {
		return b, nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 2*KeyLen {
		k := make([]byte, KeyLen)
		if _, err := hex.Decode(k, t); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("cluster key: the file must hold 32 raw bytes or 64 hex digits (openssl rand -hex 32)")
}
