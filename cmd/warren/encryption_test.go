package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/crypt"
	"github.com/warrenmq/warren/wal"
)

// writeKey writes a fresh hex key file into dir and returns its path.
func writeKey(t *testing.T, dir, name string) string {
	t.Helper()
	var raw [crypt.KeySize]byte
	_, _ = rand.Read(raw[:])
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(raw[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func parseEncFlags(t *testing.T, args ...string) *encryptionFlags {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := registerEncryptionFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func loadEnc(t *testing.T, dataDir string, args ...string) (*encryption, error) {
	t.Helper()
	return parseEncFlags(t, args...).load(dataDir, zerolog.New(zerolog.NewTestWriter(t)))
}

func TestEncryptionFlags_KeyInsideDataDirIsRefused(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	inside := writeKey(t, filepath.Join(data, "sub"), "k")
	outside := writeKey(t, root, "k")
	link := filepath.Join(root, "link")
	if err := os.Symlink(inside, link); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--encryption-key-file", inside},
		{"--encryption-key-file", outside + "," + inside},
		{"--encryption-key-file", link}, // a symbolic link to a key inside
		{"--vhost-key", "v=" + inside},
		{"--encryption-key-file", filepath.Join(data, "sub", "..", "sub", "k")},
	} {
		_, err := loadEnc(t, data, args...)
		if err == nil || !strings.Contains(err.Error(), "inside the data folder") {
			t.Errorf("%v: %v, want a refusal", args, err)
		}
	}
	// Through a symbolic link to the data folder as well.
	dataLink := filepath.Join(root, "datalink")
	if err := os.Symlink(data, dataLink); err != nil {
		t.Fatal(err)
	}
	if _, err := loadEnc(t, dataLink, "--encryption-key-file", inside); err == nil {
		t.Error("a key inside the data folder reached through a link to it was accepted")
	}
	if _, err := loadEnc(t, data, "--encryption-key-file", outside); err != nil {
		t.Errorf("key outside the data folder: %v", err)
	}
}

func TestEncryptionFlags_Errors(t *testing.T) {
	root := t.TempDir()
	k := writeKey(t, root, "k")
	bad := filepath.Join(root, "bad")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--encryption-key-file", bad}, "32 bytes"},
		{[]string{"--encryption-key-file", filepath.Join(root, "missing")}, "missing"},
		{[]string{"--encryption-key-file", k + "," + k}, "twice"},
		{[]string{"--encryption-key-file", k + ","}, "empty file name"},
		{[]string{"--vhost-key", "v=" + k, "--vhost-key", "v=" + k}, "given twice"},
	} {
		if _, err := loadEnc(t, filepath.Join(root, "data"), c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	registerEncryptionFlags(fs)
	for _, v := range []string{"v", "=k", "v="} {
		if err := fs.Parse([]string{"--vhost-key", v}); err == nil {
			t.Errorf("--vhost-key %q accepted", v)
		}
	}
}

// TestStorage_Encryption runs the storage adapter: the definitions log stays plaintext, the
// queue log and the spill of vhost "a" (node key) and "b" (own key) hold no plaintext, a restart
// with the keys reads everything back, and a wrong key for "b" puts only b's queue out of service
// with an error naming the vhost, the files unchanged.
func TestStorage_Encryption(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	nodeK, bK, otherK := writeKey(t, root, "node"), writeKey(t, root, "b"), writeKey(t, root, "other")
	open := func(args ...string) *walStorage {
		t.Helper()
		enc, err := loadEnc(t, data, args...)
		if err != nil {
			t.Fatal(err)
		}
		cfg := wal.Config{Dir: filepath.Join(data, "wal"), NoSync: true, Logger: zerolog.New(zerolog.NewTestWriter(t))}
		s, err := openStorage(cfg, filepath.Join(data, "spill"), enc)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	secret := []byte("\x00\x01secret-body-and-properties")
	if s := open("--vhost-key", "b="+bK); s.QueueEncrypted("a", "q") || !s.QueueEncrypted("b", "q") {
		t.Fatal("QueueEncrypted: only vhost b has a key")
	} else {
		s.Close()
	}
	s := open("--encryption-key-file", nodeK, "--vhost-key", "b="+bK)
	if !s.QueueEncrypted("a", "q") {
		t.Fatal("QueueEncrypted: the node key covers vhost a")
	}
	done := make(chan error, 3)
	s.defs.Append([]byte("definition-record"), func(_ uint64, err error) { done <- err })
	for _, vh := range []string{"a", "b"} {
		l, err := s.OpenQueueLog(vh, "q", nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Append(secret, func(_ uint64, err error) { done <- err })
		sp, err := s.OpenSpill(vh, "q")
		if err != nil {
			t.Fatal(err)
		}
		sp.Append(secret, nil)
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var sawDefs bool
	files := map[string][]byte{}
	err := filepath.WalkDir(data, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = b
		if bytes.Contains(b, []byte("secret-body")) {
			t.Errorf("plaintext in %s", path)
		}
		sawDefs = sawDefs || bytes.Contains(b, []byte("definition-record"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawDefs {
		t.Error("the definitions log is not plaintext")
	}

	replay := func(s *walStorage, vh string) error {
		_, err := s.OpenQueueLog(vh, "q", func(_ uint64, p []byte, _ bool) error {
			if !bytes.Equal(p, secret) {
				t.Errorf("vhost %s replays %q", vh, p)
			}
			return nil
		})
		return err
	}
	s = open("--encryption-key-file", nodeK, "--vhost-key", "b="+otherK+","+bK) // rotated
	for _, vh := range []string{"a", "b"} {
		if err := replay(s, vh); err != nil {
			t.Fatalf("vhost %s: %v", vh, err)
		}
	}
	s.Close()

	s = open("--encryption-key-file", nodeK, "--vhost-key", "b="+otherK)
	if err := replay(s, "a"); err != nil {
		t.Fatalf("vhost a with the wrong key for b: %v", err)
	}
	err = replay(s, "b")
	if !errors.Is(err, crypt.ErrUnknownKey) || !errors.Is(err, wal.ErrCipher) || !strings.Contains(err.Error(), "vhost 'b'") {
		t.Fatalf("vhost b with the wrong key: %v", err)
	}
	t.Logf("wrong key: %v", err)
	s.Close()

	s = open() // no keys at all
	if err := replay(s, "a"); !errors.Is(err, crypt.ErrUnknownKey) || !strings.Contains(err.Error(), "no encryption key") {
		t.Fatalf("vhost a without keys: %v", err)
	}
	s.Close()
	for path, b := range files {
		if strings.Contains(path, string(filepath.Separator)+"spill"+string(filepath.Separator)) {
			continue // wiped at each start
		}
		now, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(now, b) {
			t.Errorf("%s changed (%v)", path, err)
		}
	}
}

// TestStorage_PlaintextFromBeforeEncryption: a queue log written without keys is refused by a
// node with keys (unencrypted records are not authenticated) unless it runs with
// --encryption-allow-plaintext, which reads the old records and seals the new ones.
func TestStorage_PlaintextFromBeforeEncryption(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	key := writeKey(t, root, "k")
	open := func(args ...string) *walStorage {
		t.Helper()
		enc, err := loadEnc(t, data, args...)
		if err != nil {
			t.Fatal(err)
		}
		cfg := wal.Config{Dir: filepath.Join(data, "wal"), NoSync: true, Logger: zerolog.New(zerolog.NewTestWriter(t))}
		s, err := openStorage(cfg, filepath.Join(data, "spill"), enc)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	publish := func(s *walStorage, p string) error {
		var got []string
		l, err := s.OpenQueueLog("v", "q", func(_ uint64, b []byte, _ bool) error { got = append(got, string(b)); return nil })
		if err != nil {
			return err
		}
		if p != "" {
			done := make(chan error, 1)
			l.Append([]byte(p), func(_ uint64, err error) { done <- err })
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("replayed %q", got)
		return nil
	}
	s := open()
	if err := publish(s, "\x00plain-old"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open("--encryption-key-file", key)
	if err := publish(s, ""); !errors.Is(err, crypt.ErrNotSealed) || !strings.Contains(err.Error(), "--encryption-allow-plaintext") {
		t.Fatalf("plaintext record with a key: %v", err)
	}
	s.Close()
	s = open("--encryption-key-file", key, "--encryption-allow-plaintext")
	if err := publish(s, "\x00sealed-new"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open("--encryption-key-file", key, "--encryption-allow-plaintext")
	if err := publish(s, ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	seg, err := os.ReadFile(filepath.Join(data, "wal", queueLogName("v", "q"), "00000000000000000001"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(seg, []byte("plain-old")) || bytes.Contains(seg, []byte("sealed-new")) {
		t.Fatal("want the old record in plaintext and the new one sealed")
	}
}
