package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Layout of a sealed record (see the package documentation).
const (
	magic0, magic1 = 0xE7, 0x00
	version        = 1
	saltSize       = 16
	counterSize    = 8
	headerSize     = 3 + IDSize + saltSize + counterSize
	tagSize        = 16
	nonceSize      = 12

	// Overhead is how many bytes sealing adds to a payload.
	Overhead = headerSize + tagSize
)

// recordKeyInfo is the HKDF info string of record keys.
const recordKeyInfo = "warren record key v1"

// maxCachedKeys bounds the record keys a Cipher keeps for opening records sealed by other
// Ciphers (earlier runs of the node, older keys). Replay reads in offset order, so records come
// in runs of one salt and a small cache misses once per run.
const maxCachedKeys = 64

// Errors from Open. Check them with errors.Is.
var (
	// ErrAuth means a sealed record failed authentication: it was modified, moved to another
	// offset, or copied from another log.
	ErrAuth = errors.New("crypt: authentication failed")
	// ErrUnknownKey means a record was sealed with a key that is not in the Keyring (or the
	// Keyring has none). The error is a *KeyError naming the key id.
	ErrUnknownKey = errors.New("crypt: record sealed with a key that is not configured")
	// ErrNotSealed means a Keyring with keys found a plaintext record.
	ErrNotSealed = errors.New("crypt: record is not encrypted")
	// ErrFormat means a record starts like a sealed one but is too short or of an unknown version.
	ErrFormat = errors.New("crypt: malformed sealed record")
)

// KeyError reports a record sealed with a key the Keyring does not hold. It wraps ErrUnknownKey.
type KeyError struct {
	Label string   // whose keys were tried, e.g. "vhost 'orders'"
	ID    string   // id of the key that sealed the record
	Have  []string // ids of the configured keys (none: encryption is off for Label)
}

func (e *KeyError) Error() string {
	if len(e.Have) == 0 {
		return fmt.Sprintf("crypt: record sealed with key %s, but %s has no encryption key configured", e.ID, e.Label)
	}
	return fmt.Sprintf("crypt: record sealed with key %s, which is not among the keys of %s (%s)",
		e.ID, e.Label, strings.Join(e.Have, ", "))
}

// Unwrap makes errors.Is(err, ErrUnknownKey) true.
func (e *KeyError) Unwrap() error { return ErrUnknownKey }

// Keyring is the ordered key list of one scope: the first key seals, every key opens. A Keyring
// with no keys stores plaintext. It is immutable and safe for concurrent use.
type Keyring struct {
	keys           []Key
	allowPlaintext bool
}

// NewKeyring returns a Keyring of keys, the first of which seals. No keys: plaintext.
func NewKeyring(keys ...Key) (*Keyring, error) {
	for i, k := range keys {
		if k.secret == ([KeySize]byte{}) {
			return nil, fmt.Errorf("crypt: key %d: %w", i+1, ErrBadKey)
		}
		for _, o := range keys[:i] {
			if o.id == k.id {
				return nil, fmt.Errorf("crypt: key %s is listed twice", k.ID())
			}
		}
	}
	return &Keyring{keys: slices.Clone(keys)}, nil
}

// IDs returns the ids of the keys, the sealing key first.
func (r *Keyring) IDs() []string {
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.ID()
	}
	return ids
}

// AllowingPlaintext returns a copy of r whose Ciphers also open plaintext records (passing them
// through unchanged) instead of refusing them with ErrNotSealed: for reading records stored
// before encryption was turned on. Such records are not authenticated, so a forged plaintext
// record is accepted too; use it only while such records remain.
func (r *Keyring) AllowingPlaintext() *Keyring {
	c := *r
	c.allowPlaintext = true
	return &c
}

// Encrypts reports whether the Keyring has a key, that is whether its Ciphers seal.
func (r *Keyring) Encrypts() bool { return len(r.keys) > 0 }

func (r *Keyring) find(id []byte) *Key {
	for i := range r.keys {
		if string(r.keys[i].id[:]) == string(id) {
			return &r.keys[i]
		}
	}
	return nil
}

// Cipher returns a new Cipher for one log. label names the scope in errors ("vhost 'orders'");
// binding is the log's identity, authenticated with every record so that records cannot be
// copied between logs. Each call draws a fresh salt: call it each time a log is opened.
func (r *Keyring) Cipher(label, binding string) *Cipher {
	c := &Cipher{ring: r, label: label, binding: binding}
	if len(r.keys) == 0 {
		return c
	}
	k := &r.keys[0]
	var salt [saltSize]byte
	_, _ = rand.Read(salt[:]) // never fails (crypto/rand aborts the process instead)
	aead, err := recordAEAD(k, salt[:])
	if err != nil {
		panic("crypt: " + err.Error()) // only for a key of the wrong length, which Key rules out
	}
	c.hdr[0], c.hdr[1], c.hdr[2] = magic0, magic1, version
	copy(c.hdr[3:], k.id[:])
	copy(c.hdr[3+IDSize:], salt[:])
	c.own, c.aead = cacheKey(k, salt[:]), aead
	return c
}

// Cipher seals and opens the records of one log (see Keyring.Cipher). It satisfies wal.Cipher.
// All methods may be called concurrently.
type Cipher struct {
	ring    *Keyring
	label   string
	binding string
	hdr     [headerSize - counterSize]byte // magic, version, key id and salt of sealed records
	own     [IDSize + saltSize]byte
	aead    cipher.AEAD // the record key of hdr; nil when the Keyring has no key
	ctr     atomic.Uint64

	mu    sync.Mutex
	cache map[[IDSize + saltSize]byte]cipher.AEAD
}

// Seal appends the sealed form of plaintext, the record at offset, to dst and returns the
// result. Without keys it appends plaintext unchanged. plaintext must not begin with the sealed
// magic (see the package documentation) and must not overlap dst's spare capacity.
func (c *Cipher) Seal(dst, plaintext []byte, offset uint64) []byte {
	if c.aead == nil {
		return append(dst, plaintext...)
	}
	n := c.ctr.Add(1)
	dst = slices.Grow(dst, Overhead+len(plaintext))
	start := len(dst)
	dst = append(dst, c.hdr[:]...)
	dst = binary.BigEndian.AppendUint64(dst, n)
	sp := scratchPool.Get().(*[]byte)
	buf := c.nonceAndAAD(*sp, dst[start:], offset)
	dst = c.aead.Seal(dst, buf[:nonceSize], plaintext, buf[nonceSize:])
	*sp = buf[:0]
	scratchPool.Put(sp)
	return dst
}

// Open appends the plaintext of the record at offset to dst and returns the result. Errors:
// ErrAuth (modified, moved or foreign record), a *KeyError wrapping ErrUnknownKey (sealed with a
// key the Keyring lacks), ErrNotSealed (plaintext while the Keyring has keys, unless it allows
// plaintext), ErrFormat. Without keys, a plaintext record is appended unchanged.
func (c *Cipher) Open(dst, sealed []byte, offset uint64) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != magic0 || sealed[1] != magic1 {
		if c.aead == nil || c.ring.allowPlaintext {
			return append(dst, sealed...), nil
		}
		return nil, fmt.Errorf("%w, but %s has encryption keys", ErrNotSealed, c.label)
	}
	if len(sealed) < headerSize+tagSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrFormat, len(sealed))
	}
	if sealed[2] != version {
		return nil, fmt.Errorf("%w: unknown version %d", ErrFormat, sealed[2])
	}
	id, salt := sealed[3:3+IDSize], sealed[3+IDSize:3+IDSize+saltSize]
	k := c.ring.find(id)
	if k == nil {
		return nil, &KeyError{Label: c.label, ID: fmt.Sprintf("%x", id), Have: c.ring.IDs()}
	}
	aead, err := c.recordKey(k, salt)
	if err != nil {
		return nil, err
	}
	sp := scratchPool.Get().(*[]byte)
	buf := c.nonceAndAAD(*sp, sealed[:headerSize], offset)
	out, err := aead.Open(dst, buf[:nonceSize], sealed[headerSize:], buf[nonceSize:])
	*sp = buf[:0]
	scratchPool.Put(sp)
	if err != nil {
		return nil, fmt.Errorf("%w: the record was modified, moved or copied from another log (%s, key %s)", ErrAuth, c.label, k.ID())
	}
	return out, nil
}

// scratchPool holds buffers for nonces and additional data: passing a stack buffer through the
// cipher.AEAD interface would allocate on every record.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// nonceAndAAD appends to buf[:0] the GCM nonce (four zero bytes and the counter, nonceSize bytes)
// and then the additional data (the header, the offset and the binding) of the record whose
// header is hdr.
func (c *Cipher) nonceAndAAD(buf, hdr []byte, offset uint64) []byte {
	buf = append(buf[:0], 0, 0, 0, 0)
	buf = append(buf, hdr[headerSize-counterSize:headerSize]...)
	buf = append(buf, hdr[:headerSize]...)
	buf = binary.BigEndian.AppendUint64(buf, offset)
	return append(buf, c.binding...)
}

func cacheKey(k *Key, salt []byte) (ck [IDSize + saltSize]byte) {
	copy(ck[:], k.id[:])
	copy(ck[IDSize:], salt)
	return ck
}

// recordKey returns the AEAD of the record key for k and salt.
func (c *Cipher) recordKey(k *Key, salt []byte) (cipher.AEAD, error) {
	ck := cacheKey(k, salt)
	if c.aead != nil && ck == c.own {
		return c.aead, nil
	}
	c.mu.Lock()
	a := c.cache[ck]
	c.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := recordAEAD(k, salt)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.cache == nil || len(c.cache) >= maxCachedKeys {
		c.cache = make(map[[IDSize + saltSize]byte]cipher.AEAD)
	}
	c.cache[ck] = a
	c.mu.Unlock()
	return a, nil
}

// recordAEAD derives the record key HKDF-SHA256(key, salt, recordKeyInfo) and returns its
// AES-256-GCM.
func recordAEAD(k *Key, salt []byte) (cipher.AEAD, error) {
	rk, err := hkdf.Key(sha256.New, k.secret[:], salt, recordKeyInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("crypt: derive record key: %w", err)
	}
	b, err := aes.NewCipher(rk)
	clear(rk)
	if err != nil {
		return nil, fmt.Errorf("crypt: record key: %w", err)
	}
	return cipher.NewGCM(b)
}
