package conformance

// Warren creates a durable queue's log on disk at the queue's first write, not at its declare
// (docs/design.md, "Storage seams"). These tests look at the broker's data folder from outside:
// a log is a folder holding segment files (durFindLog).

import (
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// durLogFolders returns the folders under dataDir (outside the spill) that hold segment files.
func durLogFolders(t *testing.T, dataDir string) map[string]bool {
	t.Helper()
	dirs := map[string]bool{}
	err := filepath.WalkDir(dataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && e.Name() == "spill" {
			return filepath.SkipDir
		}
		if n := e.Name(); e.Type().IsRegular() && len(n) == 20 && strings.Trim(n, "0123456789") == "" {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dataDir, err)
	}
	return dirs
}

// durSameLogs fails the test when the log folders under dataDir are not want.
func durSameLogs(t *testing.T, dataDir string, want map[string]bool, when string) {
	t.Helper()
	if got := durLogFolders(t, dataDir); !maps.Equal(got, want) {
		t.Fatalf("%s: log folders %v, want %v\n%s", when, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)), durTree(dataDir))
	}
}

// durMessageCount returns the ready count a passive queue.declare reports.
func durMessageCount(t *testing.T, c *amqp.Connection, q string) int {
	t.Helper()
	ch := openChannel(t, c)
	defer ch.Close()
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("passive queue.declare %s: %v", q, err)
	}
	return info.Messages
}

// TestRestart_QueueLogCreatedAtFirstWrite: declaring durable queues (a stream too) writes their
// definitions and no log; a transient message in a durable queue writes none either; the first
// persistent message creates its queue's log, and a stream's first message its log. After
// kill -9 a queue declared but never written to is back, empty, still without a log, and a
// written one with its messages; both take new messages, which survive a second kill -9.
// Deleting a queue without a log succeeds; deleting one with a log removes the log.
func TestRestart_QueueLogCreatedAtFirstWrite(t *testing.T) {
	onlyWarren(t)
	t.Parallel()
	dir := durDataDir(t)
	b := durBroker(t, dir)
	c := dialURL(t, b.URL)
	logs := durLogFolders(t, dir) // the definitions log
	qEmpty, qWritten, qTransient, qStream := uniqueName(t, "empty"), uniqueName(t, "written"), uniqueName(t, "transient"), uniqueName(t, "stream")
	durDeclare(t, c, nil, qEmpty, qWritten, qTransient)
	durDeclare(t, c, amqp.Table{"x-queue-type": "stream"}, qStream)
	durSameLogs(t, dir, logs, "after declaring 4 durable queues")

	durPublish(t, c, "", qTransient, amqp.Transient, "transient-0")
	durSameLogs(t, dir, logs, "after a transient message to a durable queue")

	written := durBodies("written", 3)
	durPublish(t, c, "", qWritten, amqp.Persistent, written...)
	wDir, _ := durFindLog(t, dir, []byte("written-000"))
	if logs[wDir] {
		t.Fatalf("the written queue's messages are in the log %s that existed before", wDir)
	}
	logs[wDir] = true
	durSameLogs(t, dir, logs, "after the first persistent message")

	durPublish(t, c, "", qStream, amqp.Transient, "stream-0")
	sDir, _ := durFindLog(t, dir, []byte("stream-0"))
	logs[sDir] = true
	durSameLogs(t, dir, logs, "after the stream's first message")
	b.Kill()

	b = durBroker(t, dir)
	c = dialURL(t, b.URL)
	if n := durMessageCount(t, c, qEmpty); n != 0 {
		t.Fatalf("the never written queue %s holds %d messages after kill -9", qEmpty, n)
	}
	if n := durMessageCount(t, c, qTransient); n != 0 {
		t.Fatalf("%s holds %d messages after kill -9: its only message was transient", qTransient, n)
	}
	durExpectBodies(t, c, qWritten, written)
	durSameLogs(t, dir, logs, "after the restart")

	durPublish(t, c, "", qEmpty, amqp.Persistent, "empty-after")
	eDir, _ := durFindLog(t, dir, []byte("empty-after"))
	logs[eDir] = true
	durPublish(t, c, "", qWritten, amqp.Persistent, "written-after")
	b.Kill()

	b = durBroker(t, dir)
	c = dialURL(t, b.URL)
	durExpectBodies(t, c, qEmpty, []string{"empty-after"})
	durExpectBodies(t, c, qWritten, append(written, "written-after"))
	durSameLogs(t, dir, logs, "after the second restart")

	ch := openChannel(t, c)
	if _, err := ch.QueueDelete(qTransient, false, false, false); err != nil {
		t.Fatalf("queue.delete %s (no log): %v", qTransient, err)
	}
	if _, err := ch.QueueDelete(qWritten, false, false, false); err != nil {
		t.Fatalf("queue.delete %s: %v", qWritten, err)
	}
	delete(logs, wDir)
	durSameLogs(t, dir, logs, "after deleting two queues")
}
