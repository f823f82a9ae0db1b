package conformance

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// backlogRSS returns a process's resident memory in bytes.
func backlogRSS(t *testing.T, pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Warren only: with a 64 MiB memory budget, a backlog far larger than memory (2 GiB of 1 KiB
// messages by default; WARREN_BACKLOG_MIB changes it, -short uses 256 MiB) waits on disk: the
// broker's RSS stays under budget + 64 MiB of stated margin (runtime, buffers, WAL tail
// segments, garbage), and a consumer then gets every message, in order.
func TestBacklog_LargerThanMemoryStaysBounded(t *testing.T) {
	onlyWarren(t)
	if os.Getenv("CONFORMANCE_RACE") != "" {
		t.Skip("the race detector multiplies the broker's memory: RSS bounds do not apply")
	}
	const budget = 64 << 20
	const margin = 64 << 20
	mib := 2048
	if testing.Short() {
		mib = 256
	}
	if s := os.Getenv("WARREN_BACKLOG_MIB"); s != "" {
		mib, _ = strconv.Atoi(s)
	}
	dir := filepath.Join(t.TempDir(), "data")
	// The backlog is written to disk (the spill) once: leave room for it twice over.
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(dir), &st); err == nil {
		free := int64(st.Bavail) * int64(st.Bsize) >> 20
		if free < 3*int64(mib) {
			mib = int(free / 3)
			t.Logf("only %d MiB free on the test's disk: backlog reduced to %d MiB", free, mib)
		}
		if mib < 128 {
			t.Skipf("only %d MiB free on the test's disk: too little for a backlog larger than the memory budget", free)
		}
	}
	n := mib << 10 // 1 KiB messages
	b := durBroker(t, dir, "--memory-budget", strconv.Itoa(budget), "--max-queue-memory", strconv.Itoa(budget/4))
	pid := b.Cmd.Process.Pid
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if r := backlogRSS(t, pid); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-done }()

	q := uniqueName(t)
	c := dialURL(t, b.URL)
	ch := openChannel(t, c)
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1024)
	start := time.Now()
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint64(body, uint64(i))
		if err := ch.Publish("", q, false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	// A confirm round trip on another channel is not ordered with this one: poll the count.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		info, err := openChannel(t, c).QueueDeclarePassive(q, false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if info.Messages == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d of %d messages", info.Messages, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pubTime := time.Since(start)
	pubPeak := peak.Load()
	if err := ch.Qos(1000, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case d := <-ds:
			if got := binary.BigEndian.Uint64(d.Body); got != uint64(i) || len(d.Body) != 1024 {
				t.Fatalf("message %d is %d (len %d): order broken", i, got, len(d.Body))
			}
			if i%500 == 499 {
				d.Ack(true)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("drain stalled at %d of %d", i, n)
		}
	}
	t.Logf("backlog %d MiB (%d messages): published in %v, peak RSS %d MiB while full, %d MiB overall; budget %d MiB + margin %d MiB",
		mib, n, pubTime.Round(time.Millisecond), pubPeak>>20, peak.Load()>>20, budget>>20, margin>>20)
	if p := peak.Load(); p > budget+margin {
		t.Fatalf("peak RSS %d MiB exceeds budget %d MiB + margin %d MiB", p>>20, budget>>20, margin>>20)
	}
}
