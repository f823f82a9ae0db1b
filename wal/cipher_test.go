package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// keyedCipher stands in for a real AEAD: a one-byte key id, the payload masked with the key and
// offset, and a CRC over the log name, offset and plaintext as the "tag". It refuses another
// key's records and modified, moved or foreign ones, as crypt.Cipher does.
type keyedCipher struct {
	name string
	key  byte
}

var (
	errTestWrongKey = errors.New("test cipher: wrong key")
	errTestAuth     = errors.New("test cipher: authentication failed")
)

func (c keyedCipher) tag(p []byte, off uint64) uint32 {
	h := crc32.NewIEEE()
	h.Write([]byte(c.name))
	h.Write(binary.BigEndian.AppendUint64(nil, off))
	h.Write(p)
	return h.Sum32()
}

func (c keyedCipher) Seal(dst, p []byte, off uint64) []byte {
	dst = append(dst, c.key)
	for _, b := range p {
		dst = append(dst, b^c.key^byte(off))
	}
	return binary.BigEndian.AppendUint32(dst, c.tag(p, off))
}

func (c keyedCipher) Open(dst, s []byte, off uint64) ([]byte, error) {
	if len(s) < 5 {
		return nil, errTestAuth
	}
	if s[0] != c.key {
		return nil, errTestWrongKey
	}
	start := len(dst)
	for _, b := range s[1 : len(s)-4] {
		dst = append(dst, b^c.key^byte(off))
	}
	if binary.BigEndian.Uint32(s[len(s)-4:]) != c.tag(dst[start:], off) {
		return nil, errTestAuth
	}
	return dst, nil
}

// cipherForKey returns a Config.CipherFor that gives log "plain" no cipher and every other log
// a keyedCipher bound to its name, and records the names it was called with.
func cipherForKey(key byte, calls *[]string, mu *sync.Mutex) func(string) Cipher {
	return func(name string) Cipher {
		if mu != nil {
			mu.Lock()
			*calls = append(*calls, name)
			mu.Unlock()
		}
		if name == "plain" {
			return nil
		}
		return keyedCipher{name: name, key: key}
	}
}

// snapshot returns the contents of every file under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		out[path] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rewriteRecord applies fn to the body of the idx-th record (from 0) of a segment file and
// fixes its checksum, so that only the cipher can notice.
func rewriteRecord(t *testing.T, path string, idx int, fn func(body []byte)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pos := 0
	for i := 0; ; i++ {
		size, w := binary.Uvarint(data[pos:])
		if w <= 0 {
			t.Fatalf("%s has no record %d", path, idx)
		}
		rec := data[pos+w : pos+w+int(size)]
		if i == idx {
			fn(rec[headerSize:])
			finishRecord(rec, 0)
			break
		}
		pos += w + int(size)
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestManager_CipherForGivesEachLogItsCipher(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	var calls []string
	var mu sync.Mutex
	cfg.CipherFor = cipherForKey(7, &calls, &mu)
	cfg.Cipher = xorCipher{} // CipherFor wins
	m := openManager(t, cfg)
	secret := []byte("the same secret payload")
	for _, name := range []string{"a", "b", "plain"} {
		appendWait(t, openLog(t, m, name), secret)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if got := strings.Join(calls, ","); got != "a,b,plain" {
		t.Fatalf("CipherFor called with %s, want a,b,plain (once per open)", got)
	}
	mu.Unlock()
	seg := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name, segmentName(1)))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if bytes.Contains(seg("a"), secret) || bytes.Contains(seg("b"), secret) {
		t.Fatal("plaintext in a sealed log")
	}
	if !bytes.Contains(seg("plain"), secret) {
		t.Fatal("the log without a cipher is not plaintext")
	}
	// Records are bound to their log: b's segment copied into a's place does not open.
	mustWriteFile(t, filepath.Join(dir, "a", segmentName(1)), seg("b"))
	m = openManager(t, cfg)
	for _, name := range []string{"b", "plain"} {
		if got := replayAll(t, openLog(t, m, name)); len(got) != 1 || !bytes.Equal(got[0].Payload, secret) {
			t.Fatalf("log %s replays %v", name, got)
		}
	}
	err := openLog(t, m, "a").Replay(func(Entry) error { return nil })
	if !errors.Is(err, ErrCipher) || !errors.Is(err, errTestAuth) {
		t.Fatalf("replay of a record copied from another log: %v, want ErrCipher and the cipher's error", err)
	}
}

// TestLog_CipherErrorLeavesLogUntouched opens a log with the wrong key: the log opens (its
// checksums are fine) but Replay fails with a *CipherError, the log goes out of service, other
// logs work, and no file changes. Reopened with the right key, everything is there and appends
// continue.
func TestLog_CipherErrorLeavesLogUntouched(t *testing.T) {
	dir := t.TempDir()
	right := testConfig(t, dir)
	right.CipherFor = cipherForKey(1, nil, nil)
	m := openManager(t, right)
	l := openLog(t, m, "q")
	var want [][]byte
	for i := range 20 {
		want = append(want, payloadFor(i))
		appendWait(t, l, want[i])
	}
	l.Retire(1, 2)
	l.MarkDelivered(3)
	syncLog(t, l)
	appendWait(t, openLog(t, m, "other"), []byte("other"))
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, filepath.Join(dir, "q"))

	buf := &logBuf{}
	wrong := right
	wrong.Logger = testLogger(t, buf)
	wrong.CipherFor = func(name string) Cipher {
		if name == "other" {
			return keyedCipher{name: name, key: 1}
		}
		return keyedCipher{name: name, key: 2}
	}
	m = openManager(t, wrong)
	l = openLog(t, m, "q")
	err := l.Replay(func(Entry) error { return nil })
	var ce *CipherError
	if !errors.Is(err, ErrCipher) || !errors.As(err, &ce) || ce.Log != "q" || ce.Offset != 3 || !errors.Is(err, errTestWrongKey) {
		t.Fatalf("Replay with the wrong key: %v, want a *CipherError at offset 3 wrapping the cipher's error", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Fatalf("a wrong key is reported as corruption: %v", err)
	}
	if !errors.Is(l.Err(), ErrCipher) {
		t.Fatalf("Err() = %v, want the log out of service", l.Err())
	}
	if off := l.Append([]byte("x"), nil); off != 0 {
		t.Fatal("Append to a log out of service succeeded")
	}
	l.Retire(4)
	if _, err := m.Log("q"); !errors.Is(err, ErrCipher) {
		t.Fatalf("Manager.Log of the log out of service: %v", err)
	}
	if got := replayAll(t, openLog(t, m, "other")); len(got) != 1 {
		t.Fatalf("the other log replays %v", got)
	}
	if !strings.Contains(buf.String(), "log out of service") {
		t.Errorf("no log line for the log going out of service:\n%s", buf)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, filepath.Join(dir, "q")); !maps.Equal(before, after) {
		t.Fatal("the log's files changed while it could not be opened")
	}

	m = openManager(t, right)
	l = openLog(t, m, "q")
	got := replayAll(t, l)
	if len(got) != 18 || got[0].Offset != 3 || !got[0].Delivered || !bytes.Equal(got[17].Payload, want[19]) {
		t.Fatalf("Replay with the right key: %d entries, first %+v", len(got), got[0])
	}
	off := appendWait(t, l, []byte("after"))
	if p, err := l.Read(off); err != nil || string(p) != "after" {
		t.Fatalf("Read after reopening = %q, %v", p, err)
	}
}

// TestLog_TamperedRecordIsNotCutAsTornTail modifies the last record of the tail segment and
// fixes its checksum: opening does not repair anything (the checksum is fine), Replay reports the
// failed authentication, the log is out of service, and the files stay as they are.
func TestLog_TamperedRecordIsNotCutAsTornTail(t *testing.T) {
	for _, idx := range []int{0, 9} { // first and last record
		dir := t.TempDir()
		buf := &logBuf{}
		cfg := testConfig(t, dir)
		cfg.Logger = testLogger(t, buf)
		cfg.CipherFor = cipherForKey(1, nil, nil)
		m := openManager(t, cfg)
		l := openLog(t, m, "q")
		for i := range 10 {
			appendWait(t, l, payloadFor(i))
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		rewriteRecord(t, filepath.Join(dir, "q", segmentName(1)), idx, func(b []byte) { b[3] ^= 0x40 })
		before := snapshot(t, dir)

		m = openManager(t, cfg)
		l = openLog(t, m, "q")
		if l.LastOffset() != 10 {
			t.Fatalf("record %d: LastOffset %d after open, want 10 (nothing cut)", idx, l.LastOffset())
		}
		var seen int
		err := l.Replay(func(Entry) error { seen++; return nil })
		var ce *CipherError
		if !errors.As(err, &ce) || ce.Offset != uint64(idx+1) || !errors.Is(err, errTestAuth) {
			t.Fatalf("record %d: Replay = %v after %d entries", idx, err, seen)
		}
		if _, err := l.Read(1); !errors.Is(err, ErrCipher) {
			t.Fatalf("record %d: Read of a log out of service = %v", idx, err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(buf.String(), "repaired torn tail") {
			t.Fatalf("record %d: a tampered record was cut off as a torn tail", idx)
		}
		if after := snapshot(t, dir); !maps.Equal(before, after) {
			t.Fatalf("record %d: files changed", idx)
		}
	}
}

// TestLog_ReadOfTamperedRecordPutsLogOutOfService: the same through Read on an open log.
func TestLog_ReadOfTamperedRecordPutsLogOutOfService(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.CipherFor = cipherForKey(1, nil, nil)
	m := openManager(t, cfg)
	l := openLog(t, m, "q")
	for i := range 3 {
		appendWait(t, l, payloadFor(i))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	rewriteRecord(t, filepath.Join(dir, "q", segmentName(1)), 1, func(b []byte) { b[len(b)-1] ^= 1 })
	m = openManager(t, cfg)
	l = openLog(t, m, "q")
	if p, err := l.Read(1); err != nil || !bytes.Equal(p, payloadFor(0)) {
		t.Fatalf("Read(1) = %q, %v", p, err)
	}
	if _, err := l.Read(2); !errors.Is(err, ErrCipher) || !errors.Is(err, errTestAuth) {
		t.Fatalf("Read(2) = %v, want ErrCipher", err)
	}
	if !errors.Is(l.Err(), ErrCipher) {
		t.Fatalf("Err() = %v", l.Err())
	}
	done := make(chan error, 1)
	l.Append([]byte("x"), func(_ uint64, err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrCipher) {
		t.Fatalf("Append after the failure: %v", err)
	}
}
