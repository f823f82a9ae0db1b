package conformance

// Encryption at rest (Warren only; RabbitMQ has no equivalent for its message store). With
// --encryption-key-file or --vhost-key, message bodies and properties in the queue logs and the
// spill are sealed with AES-256-GCM; the definitions log stays plaintext. Each test starts its
// own brokers on a data folder of its own; key files live beside it (Warren refuses keys inside
// the data folder).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// encKey writes a fresh key file (64 hex digits) beside dataDir and returns its path.
func encKey(t *testing.T, dataDir, name string) string {
	t.Helper()
	var raw [32]byte
	rand.Read(raw[:])
	path := filepath.Join(filepath.Dir(dataDir), name+".key")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(raw[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// encLogDir is the folder of the log of queue q in vhost vh: Warren names it "q-" and the first
// 20 bytes of SHA-256 of vhost, NUL, queue, in hex (cmd/warren/storage.go). With encryption on
// the log cannot be found by a body marker.
func encLogDir(dataDir, vh, q string) string {
	h := sha256.Sum256([]byte(vh + "\x00" + q))
	return filepath.Join(dataDir, "wal", "q-"+hex.EncodeToString(h[:20]))
}

// encFilesWith returns the files under dir that contain any of markers.
func encFilesWith(t *testing.T, dir string, markers ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range markers {
			if bytes.Contains(data, []byte(m)) {
				out = append(out, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// encSnapshot returns the contents of every file under dir.
func encSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		out[path] = string(data)
		return err
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	if len(out) == 0 {
		t.Fatalf("no files under %s", dir)
	}
	return out
}

// encDefinitions writes a definitions file that creates vhost vh with full permissions for
// guest, and returns the --definitions flag for it.
func encDefinitions(t *testing.T, dataDir, vh string) []string {
	t.Helper()
	defs := map[string]any{
		"users":       []any{},
		"vhosts":      []any{map[string]string{"name": vh}},
		"permissions": []any{map[string]string{"user": "guest", "vhost": vh, "configure": ".*", "write": ".*", "read": ".*"}},
	}
	data, _ := json.Marshal(defs)
	path := filepath.Join(filepath.Dir(dataDir), "definitions.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--definitions", path}
}

// encOutOfService asserts that queue q is out of service: a passive declare on c gets a channel
// error, and the connection survives it.
func encOutOfService(t *testing.T, c *amqp.Connection, q string) string {
	t.Helper()
	_, err := openChannel(t, c).QueueDeclarePassive(q, true, false, false, false, nil)
	e, ok := err.(*amqp.Error)
	if !ok {
		t.Fatalf("passive queue.declare of %s: %v, want a channel error (queue out of service)", q, err)
	}
	if c.IsClosed() {
		t.Fatalf("the connection closed on the queue out of service")
	}
	return e.Reason
}

// encMessages returns n persistent messages whose bodies and properties carry markers.
func encMessages(prefix string, n, size int) ([]amqp.Publishing, []string) {
	msgs := make([]amqp.Publishing, n)
	bodies := make([]string, n)
	for i := range msgs {
		b := fmt.Sprintf("%s-%04d|", prefix, i)
		b += strings.Repeat("B", max(0, size-len(b)))
		bodies[i] = b
		msgs[i] = amqp.Publishing{
			DeliveryMode:  amqp.Persistent,
			Body:          []byte(b),
			CorrelationId: prefix + "-correlation-marker",
			Headers:       amqp.Table{"secret-header": prefix + "-header-marker"},
		}
	}
	return msgs, bodies
}

// TestEncryption_NoPlaintextOnDisk publishes persistent and transient messages, enough to spill
// (--max-queue-memory 65536), and greps every file under the data folder for markers from the
// bodies and the properties: with a node key none has them. The same run without a key finds
// them (the grep works). A restart with the key brings every persistent message back with its
// properties.
func TestEncryption_NoPlaintextOnDisk(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	run := func(encrypted bool) (dir string, found []string) {
		dir = durDataDir(t)
		flags := []string{"--max-queue-memory", "65536"}
		if encrypted {
			flags = append(flags, "--encryption-key-file", encKey(t, dir, "node"))
		}
		b := durBroker(t, dir, flags...)
		c := dialURL(t, b.URL)
		durable, transient := uniqueName(t, "durable"), uniqueName(t, "transient")
		durDeclare(t, c, nil, durable)
		if _, err := openChannel(t, c).QueueDeclare(transient, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		msgs, bodies := encMessages("encpersist", 300, 1024)
		durPublishMsgs(t, c, "", durable, msgs...)
		tmsgs, _ := encMessages("enctransient", 300, 1024)
		for i := range tmsgs {
			tmsgs[i].DeliveryMode = amqp.Transient
		}
		durPublishMsgs(t, c, "", transient, tmsgs...)
		markers := []string{"encpersist-0150|", "encpersist-correlation-marker", "encpersist-header-marker",
			"enctransient-0150|", "enctransient-correlation-marker", "enctransient-header-marker"}
		// The spill is written without fsync and may trail the confirms a little.
		deadline := time.Now().Add(10 * time.Second)
		for durDiskUsage(dir)["spill"] < 2*200*1024 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if use := durDiskUsage(dir); use["spill"] < 2*200*1024 {
			t.Fatalf("nothing spilled (%v): the test would not check the spill\n%s", use, durTree(dir))
		}
		found = encFilesWith(t, dir, markers...)
		if !encrypted {
			return dir, found
		}
		t.Logf("disk use with encryption: %v", durDiskUsage(dir))
		b.Stop()
		if more := encFilesWith(t, dir, markers...); len(more) > 0 {
			found = append(found, more...)
		}
		b = durBroker(t, dir, flags...)
		c = dialURL(t, b.URL)
		ds := durExpectBodies(t, c, durable, bodies)
		for _, d := range ds[:min(len(ds), 3)] {
			if d.CorrelationId != "encpersist-correlation-marker" || d.Headers["secret-header"] != "encpersist-header-marker" {
				t.Errorf("properties not restored: correlation id %q, headers %v", d.CorrelationId, d.Headers)
			}
		}
		return dir, found
	}
	_, plain := run(false)
	if len(plain) < 2 {
		t.Fatalf("without a key the markers are in %v, want the queue log and the spill: the grep checks nothing", plain)
	}
	dir, found := run(true)
	if len(found) > 0 {
		t.Errorf("with a key, plaintext of messages is in %v\n%s", found, durTree(dir))
	}
}

// TestEncryption_WrongKeyRefusesClearly: vhost "/" uses the node key and vhost "tenant" its own
// key. Restarted with a wrong key for "tenant", and then with no key at all for it, the tenant's
// queue is out of service with an error-level log line naming the vhost and the queue, the
// queue of "/" serves all its messages, and the tenant's log files are byte-identical. With the
// right key again everything is there.
func TestEncryption_WrongKeyRefusesClearly(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	const tenant = "tenant"
	defs := encDefinitions(t, dir, tenant)
	nodeKey, rightKey, wrongKey := encKey(t, dir, "node"), encKey(t, dir, "tenant"), encKey(t, dir, "wrong")
	right := append(slices.Clone(defs), "--encryption-key-file", nodeKey, "--vhost-key", tenant+"="+rightKey)
	b := durBroker(t, dir, right...)
	victim, healthy := uniqueName(t, "victim"), uniqueName(t, "healthy")
	tenantURL := "amqp://guest:guest@" + b.AMQPAddr + "/" + tenant
	ct, c := dialURL(t, tenantURL), dialURL(t, b.URL)
	durDeclare(t, ct, nil, victim)
	durDeclare(t, c, nil, healthy)
	vb, hb := durBodies("victim", 50), durBodies("healthy", 50)
	durPublish(t, ct, "", victim, amqp.Persistent, vb...)
	durPublish(t, c, "", healthy, amqp.Persistent, hb...)
	b.Stop()
	logDir := encLogDir(dir, tenant, victim)
	before := encSnapshot(t, logDir)

	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"wrong key", []string{"--encryption-key-file", nodeKey, "--vhost-key", tenant + "=" + wrongKey}, "not among the keys of vhost 'tenant'"},
		{"missing key", []string{"--encryption-key-file", nodeKey}, "not among the keys of vhost 'tenant'"},
		{"no keys", nil, "vhost 'tenant' has no encryption key"},
	} {
		b, logs := durBrokerLogged(t, dir, append(slices.Clone(defs), tc.flags...)...)
		ct, c := dialURL(t, "amqp://guest:guest@"+b.AMQPAddr+"/"+tenant), dialURL(t, b.URL)
		reason := encOutOfService(t, ct, victim)
		t.Logf("%s: client sees %s", tc.name, reason)
		if tc.flags != nil {
			durExpectBodies(t, c, healthy, hb)
		}
		lines := logs.find("error", victim, tc.want)
		if len(lines) == 0 {
			t.Errorf("%s: no error-level log line names the queue %s and says %q; log:\n%s", tc.name, victim, tc.want, logs.String())
		}
		for _, l := range lines {
			t.Logf("%s: log: %s", tc.name, l)
		}
		b.Stop()
		if after := encSnapshot(t, logDir); !maps.Equal(before, after) {
			t.Fatalf("%s: the tenant's log files changed", tc.name)
		}
	}

	b = durBroker(t, dir, right...)
	durExpectBodies(t, dialURL(t, "amqp://guest:guest@"+b.AMQPAddr+"/"+tenant), victim, vb)
	durExpectBodies(t, dialURL(t, b.URL), healthy, hb)
}

// encTamper flips one ciphertext byte of the data record in the middle of the log's first
// segment and fixes the record's CRC-32C (wal/doc.go: uvarint length, kind, CRC of kind and
// body, body), so that only the cipher's authentication can notice.
func encTamper(t *testing.T, logDir string) {
	t.Helper()
	seg := filepath.Join(logDir, fmt.Sprintf("%020d", 1))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ start, end int }
	var recs []rec
	for pos := 0; pos < len(data); {
		size, w := binary.Uvarint(data[pos:])
		if w <= 0 || pos+w+int(size) > len(data) {
			t.Fatalf("cannot parse %s at %d", seg, pos)
		}
		if data[pos+w] == 1 { // a data record
			recs = append(recs, rec{pos + w, pos + w + int(size)})
		}
		pos += w + int(size)
	}
	if len(recs) < 3 {
		t.Fatalf("%s holds %d data records", seg, len(recs))
	}
	r := data[recs[len(recs)/2].start:recs[len(recs)/2].end]
	r[5+35+3] ^= 0x01 // the envelope header (5) and the sealed header (35) come first: ciphertext
	sum := crc32.Update(crc32.Checksum(r[:1], crc32.MakeTable(crc32.Castagnoli)), crc32.MakeTable(crc32.Castagnoli), r[5:])
	binary.LittleEndian.PutUint32(r[1:5], sum)
	if err := os.WriteFile(seg, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestEncryption_TamperedRecordIsDetected flips a ciphertext byte (with a valid checksum) in one
// queue's log: that queue is out of service with an error saying authentication failed, the
// other queue in the same vhost serves all its messages.
func TestEncryption_TamperedRecordIsDetected(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	key := []string{"--encryption-key-file", encKey(t, dir, "node")}
	b := durBroker(t, dir, key...)
	c := dialURL(t, b.URL)
	victim, healthy := uniqueName(t, "victim"), uniqueName(t, "healthy")
	durDeclare(t, c, nil, victim, healthy)
	vb, hb := durBodies("victim", 40), durBodies("healthy", 40)
	durPublish(t, c, "", victim, amqp.Persistent, vb...)
	durPublish(t, c, "", healthy, amqp.Persistent, hb...)
	b.Stop()
	logDir := encLogDir(dir, "/", victim)
	encTamper(t, logDir)
	before := encSnapshot(t, logDir)

	b, logs := durBrokerLogged(t, dir, key...)
	c = dialURL(t, b.URL)
	durExpectBodies(t, c, healthy, hb)
	t.Logf("client sees %s", encOutOfService(t, c, victim))
	if lines := logs.find("error", victim, "authentication failed"); len(lines) == 0 {
		t.Errorf("no error-level log line names %s and the failed authentication; log:\n%s", victim, logs.String())
	} else {
		t.Logf("log: %s", lines[0])
	}
	b.Stop()
	if after := encSnapshot(t, logDir); !maps.Equal(before, after) {
		t.Fatal("the tampered log's files changed")
	}
}

// TestEncryption_KeyRotation: messages published with key A stay readable after the vhost's
// keys become B,A (B seals, A still opens); messages published then are sealed with B. Both
// survive another restart with B,A. With only B the queue is out of service, naming A's key id
// as missing; with B,A again everything is back, untouched.
func TestEncryption_KeyRotation(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	a, bk := encKey(t, dir, "a"), encKey(t, dir, "b")
	q := uniqueName(t, "q")
	old, newer := durBodies("old", 30), durBodies("new", 30)

	br := durBroker(t, dir, "--vhost-key", "/="+a)
	c := dialURL(t, br.URL)
	durDeclare(t, c, nil, q)
	durPublish(t, c, "", q, amqp.Persistent, old...)
	br.Stop()

	rotated := []string{"--vhost-key", "/=" + bk + "," + a}
	br = durBroker(t, dir, rotated...)
	c = dialURL(t, br.URL)
	durExpectBodies(t, c, q, old)
	durPublish(t, c, "", q, amqp.Persistent, newer...)
	br.Stop()

	all := append(slices.Clone(old), newer...)
	br = durBroker(t, dir, rotated...)
	durExpectBodies(t, dialURL(t, br.URL), q, all)
	br.Stop()
	before := encSnapshot(t, encLogDir(dir, "/", q))

	br, logs := durBrokerLogged(t, dir, "--vhost-key", "/="+bk)
	t.Logf("only B: client sees %s", encOutOfService(t, dialURL(t, br.URL), q))
	if lines := logs.find("error", q, "vhost '/'", "not among the keys"); len(lines) == 0 {
		t.Errorf("with only the new key, no error-level log line names %s, the vhost and the missing key; log:\n%s", q, logs.String())
	} else {
		t.Logf("log: %s", lines[0])
	}
	br.Stop()
	if after := encSnapshot(t, encLogDir(dir, "/", q)); !maps.Equal(before, after) {
		t.Fatal("the log changed while its old key was missing")
	}

	br = durBroker(t, dir, rotated...)
	durExpectBodies(t, dialURL(t, br.URL), q, all)
}

// TestEncryption_KeyFileInsideDataDirIsRefused: warren does not start with a key inside its
// data folder, and says why.
func TestEncryption_KeyFileInsideDataDirIsRefused(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	key := encKey(t, filepath.Join(dir, "x"), "inside") // dir/inside.key
	cx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cx, warrenBin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "",
		"--data-dir", dir, "--encryption-key-file", key).CombinedOutput()
	if err == nil || cx.Err() != nil {
		t.Fatalf("warren with a key inside --data-dir: %v (%v)\n%s", err, cx.Err(), out)
	}
	if !strings.Contains(string(out), "inside the data folder") {
		t.Fatalf("warren's refusal does not say why:\n%s", out)
	}
}
