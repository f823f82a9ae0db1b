package crypt

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testKey(t testing.TB) Key {
	t.Helper()
	var raw [KeySize]byte
	_, _ = rand.Read(raw[:])
	k, err := NewKey(raw[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testRing(t testing.TB, keys ...Key) *Keyring {
	t.Helper()
	r, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// payload returns a record that begins with a canonical uvarint, as Warren's records do.
func payload(s string) []byte { return append(binary.AppendUvarint(nil, 300), s...) }

func TestCipher_RoundTrip(t *testing.T) {
	c := testRing(t, testKey(t)).Cipher("vhost 'v'", "wal/q-1")
	for _, n := range []int{0, 1, 15, 16, 17, 1024, 1 << 20} {
		p := make([]byte, n)
		_, _ = rand.Read(p)
		if n > 0 {
			p[0] = 0x05 // a one-byte uvarint
		}
		s := c.Seal([]byte("prefix"), p, uint64(n)+1)
		if !bytes.HasPrefix(s, []byte("prefix")) || len(s) != len("prefix")+n+Overhead {
			t.Fatalf("size %d: sealed length %d, want prefix kept and %d", n, len(s), len("prefix")+n+Overhead)
		}
		if n >= 16 && bytes.Contains(s, p[1:]) {
			t.Fatalf("size %d: plaintext visible in the sealed record", n)
		}
		got, err := c.Open([]byte("x"), s[len("prefix"):], uint64(n)+1)
		if err != nil || !bytes.Equal(got, append([]byte("x"), p...)) {
			t.Fatalf("size %d: Open = %d bytes, %v", n, len(got), err)
		}
	}
}

func TestCipher_NoncesNeverRepeat(t *testing.T) {
	ring := testRing(t, testKey(t))
	seen := map[string]bool{}
	for range 4 { // several Ciphers: several opens of the same log
		c := ring.Cipher("l", "wal/q")
		for range 100 {
			s := c.Seal(nil, payload("same"), 1) // same offset and payload every time
			hdr := string(s[3:headerSize])       // key id, salt, counter
			if seen[hdr] {
				t.Fatal("salt and counter repeated")
			}
			seen[hdr] = true
		}
	}
}

// TestCipher_TamperIsDetected flips every bit of a sealed record in turn.
func TestCipher_TamperIsDetected(t *testing.T) {
	c := testRing(t, testKey(t)).Cipher("vhost 'v'", "wal/q-1")
	s := c.Seal(nil, payload("a message body and its properties"), 7)
	for i := range s {
		for bit := range 8 {
			m := bytes.Clone(s)
			m[i] ^= 1 << bit
			if _, err := c.Open(nil, m, 7); err == nil {
				t.Fatalf("flipping bit %d of byte %d went unnoticed", bit, i)
			}
		}
	}
	for n := range len(s) {
		if _, err := c.Open(nil, s[:n], 7); err == nil {
			t.Fatalf("record cut to %d bytes opened", n)
		}
	}
	m := bytes.Clone(s)
	m[len(m)-1] ^= 1
	if _, err := c.Open(nil, m, 7); !errors.Is(err, ErrAuth) {
		t.Fatalf("flipped tag: %v, want ErrAuth", err)
	}
	m = bytes.Clone(s)
	m[headerSize] ^= 1
	if _, err := c.Open(nil, m, 7); !errors.Is(err, ErrAuth) {
		t.Fatalf("flipped ciphertext: %v, want ErrAuth", err)
	}
}

func TestCipher_MovedOrCopiedRecordFails(t *testing.T) {
	ring := testRing(t, testKey(t))
	a := ring.Cipher("vhost 'v'", "wal/q-a")
	s := a.Seal(nil, payload("body"), 5)
	if _, err := a.Open(nil, s, 6); !errors.Is(err, ErrAuth) {
		t.Errorf("record moved to another offset: %v, want ErrAuth", err)
	}
	if _, err := ring.Cipher("vhost 'v'", "wal/q-b").Open(nil, s, 5); !errors.Is(err, ErrAuth) {
		t.Errorf("record copied into another log: %v, want ErrAuth", err)
	}
	if _, err := ring.Cipher("vhost 'v'", "spill/q-a").Open(nil, s, 5); !errors.Is(err, ErrAuth) {
		t.Errorf("queue record copied into the spill: %v, want ErrAuth", err)
	}
	// Another Cipher of the same log (the next start) opens it.
	if got, err := ring.Cipher("vhost 'v'", "wal/q-a").Open(nil, s, 5); err != nil || !bytes.Equal(got, payload("body")) {
		t.Errorf("reopened log: %q, %v", got, err)
	}
}

func TestCipher_WrongKeyIsNamed(t *testing.T) {
	a, b := testKey(t), testKey(t)
	s := testRing(t, a).Cipher("vhost 'v'", "wal/q").Seal(nil, payload("body"), 1)
	_, err := testRing(t, b).Cipher("vhost 'v'", "wal/q").Open(nil, s, 1)
	var ke *KeyError
	if !errors.Is(err, ErrUnknownKey) || !errors.As(err, &ke) {
		t.Fatalf("Open with another key: %v, want a *KeyError", err)
	}
	if ke.ID != a.ID() || ke.Label != "vhost 'v'" || len(ke.Have) != 1 || ke.Have[0] != b.ID() {
		t.Fatalf("KeyError = %+v", ke)
	}
	for _, want := range []string{a.ID(), b.ID(), "vhost 'v'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// No key at all: the record is refused, not passed on as plaintext.
	_, err = testRing(t).Cipher("vhost 'v'", "wal/q").Open(nil, s, 1)
	if !errors.As(err, &ke) || len(ke.Have) != 0 || !strings.Contains(err.Error(), "no encryption key") {
		t.Fatalf("Open without keys: %v", err)
	}
}

// TestKeyring_Rotation: a ring [new, old] seals with new and opens records of both; a ring
// [new] no longer opens the old records.
func TestKeyring_Rotation(t *testing.T) {
	oldK, newK := testKey(t), testKey(t)
	oldRec := testRing(t, oldK).Cipher("vhost 'v'", "wal/q").Seal(nil, payload("old"), 1)
	rotated := testRing(t, newK, oldK).Cipher("vhost 'v'", "wal/q")
	newRec := rotated.Seal(nil, payload("new"), 2)
	if !bytes.Equal(newRec[3:3+IDSize], newK.id[:]) {
		t.Fatal("the rotated ring does not seal with its first key")
	}
	for i, r := range [][]byte{oldRec, newRec} {
		if _, err := rotated.Open(nil, r, uint64(i+1)); err != nil {
			t.Fatalf("rotated ring, record %d: %v", i+1, err)
		}
	}
	retired := testRing(t, newK).Cipher("vhost 'v'", "wal/q")
	if _, err := retired.Open(nil, newRec, 2); err != nil {
		t.Fatalf("new key alone, new record: %v", err)
	}
	if _, err := retired.Open(nil, oldRec, 1); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new key alone, old record: %v, want ErrUnknownKey", err)
	}
}

func TestCipher_Plaintext(t *testing.T) {
	plain := testRing(t).Cipher("vhost 'v'", "wal/q")
	p := payload("body")
	s := plain.Seal(nil, p, 1)
	if !bytes.Equal(s, p) {
		t.Fatal("a Keyring without keys changed the payload")
	}
	if got, err := plain.Open(nil, s, 1); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("plain Open = %q, %v", got, err)
	}
	// A Keyring with keys refuses plaintext: it could be a forged record.
	keyed := testRing(t, testKey(t))
	if _, err := keyed.Cipher("vhost 'v'", "wal/q").Open(nil, p, 1); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("keyed Open of plaintext: %v, want ErrNotSealed", err)
	}
	// ... unless it allows plaintext (records from before encryption was turned on); it still seals.
	migrating := keyed.AllowingPlaintext().Cipher("vhost 'v'", "wal/q")
	if got, err := migrating.Open(nil, p, 1); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("Open of plaintext while allowing it = %q, %v", got, err)
	}
	if s := migrating.Seal(nil, p, 2); bytes.Equal(s, p) || s[0] != magic0 {
		t.Fatal("a Keyring allowing plaintext does not seal")
	}
	if _, err := keyed.Cipher("vhost 'v'", "wal/q").Open(nil, p, 1); !errors.Is(err, ErrNotSealed) {
		t.Fatal("AllowingPlaintext changed the original Keyring")
	}
	// Canonical uvarints never begin with the sealed magic.
	for _, v := range []uint64{0, 1, 0x67, 0x80, 0xE7, 0x3FFF, 1 << 40, ^uint64(0)} {
		b := binary.AppendUvarint(nil, v)
		if len(b) >= 2 && b[0] == magic0 && b[1] == magic1 {
			t.Fatalf("uvarint %d begins with the magic", v)
		}
	}
}

func TestCipher_ConcurrentUse(t *testing.T) {
	old := testKey(t)
	oldRec := testRing(t, old).Cipher("l", "b").Seal(nil, payload("old"), 1)
	c := testRing(t, testKey(t), old).Cipher("l", "b")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				off := uint64(g*1000 + i + 2)
				p := payload(fmt.Sprint(off))
				got, err := c.Open(nil, c.Seal(nil, p, off), off)
				if err != nil || !bytes.Equal(got, p) {
					t.Errorf("round trip %d: %v", off, err)
					return
				}
				if _, err := c.Open(nil, oldRec, 1); err != nil {
					t.Errorf("old record: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCipher_SealDoesNotAllocate(t *testing.T) {
	c := testRing(t, testKey(t)).Cipher("vhost 'v'", "wal/q")
	p := payload(strings.Repeat("x", 1000))
	dst := make([]byte, 0, len(p)+Overhead)
	s := c.Seal(nil, p, 1)
	out := make([]byte, 0, len(p))
	if n := testing.AllocsPerRun(100, func() { c.Seal(dst, p, 1) }); n != 0 {
		t.Errorf("Seal: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Open(out, s, 1) }); n != 0 {
		t.Errorf("Open: %v allocs", n)
	}
}

func TestParseKey(t *testing.T) {
	raw := make([]byte, KeySize)
	for i := range raw {
		raw[i] = byte(i + 1)
	}
	k1, err := ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseKey([]byte("  " + hex.EncodeToString(raw) + "\n"))
	if err != nil || k2.ID() != k1.ID() {
		t.Fatalf("hex key: %v, id %s want %s", err, k2.ID(), k1.ID())
	}
	if len(k1.ID()) != 2*IDSize {
		t.Fatalf("ID %q", k1.ID())
	}
	if s := fmt.Sprintf("%v %+v %#v %s", k1, k1, k1, k1); strings.Contains(s, hex.EncodeToString(raw[:4])) || strings.Contains(s, "\x01\x02\x03") {
		t.Fatalf("printing a key leaks it: %s", s)
	}
	for _, bad := range [][]byte{nil, raw[:31], append(bytes.Clone(raw), 0), []byte(strings.Repeat("zz", 32)),
		[]byte(hex.EncodeToString(raw[:31])), make([]byte, KeySize)} {
		if _, err := ParseKey(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%d bytes) = %v, want ErrBadKey", len(bad), err)
		}
	}
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadKeyFile(path); err != nil || k.ID() != k1.ID() {
		t.Fatalf("LoadKeyFile = %v, %v", k, err)
	}
	if _, err := NewKeyring(k1, k2); err == nil {
		t.Fatal("NewKeyring accepted the same key twice")
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, n := range []int{128, 1024, 16384} {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			c := testRing(b, testKey(b)).Cipher("vhost 'v'", "wal/q")
			p := payload(strings.Repeat("x", n))
			dst := make([]byte, 0, len(p)+Overhead)
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				dst = c.Seal(dst[:0], p, 1)
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	c := testRing(b, testKey(b)).Cipher("vhost 'v'", "wal/q")
	p := payload(strings.Repeat("x", 1024))
	s := c.Seal(nil, p, 1)
	out := make([]byte, 0, len(p))
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		out, _ = c.Open(out[:0], s, 1)
	}
}
