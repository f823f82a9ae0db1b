package session

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A stream of small writes engages pacing; a pause ends it with the bytes below the mark still
// delivered (within the deadline), and the cool-down keeps it off for a while.
func TestReadPacer_EngagesOnStreamAndPauses(t *testing.T) {
	if !paceSupported {
		t.Skip("read pacing is Linux-only")
	}
	client, server := tcpPair(t)
	p := newReadPacer(server)
	if p.raw == nil {
		t.Fatal("a TCP connection should be pacable")
	}
	msg := make([]byte, 72)
	total := 0
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 40000; i++ {
			if _, err := client.Write(msg); err != nil {
				done <- err
				return
			}
			if i%8 == 0 {
				runtime.Gosched()
			}
		}
		done <- nil
	}()
	buf := make([]byte, 16<<10)
	want := 40000 * len(msg)
	for total < want {
		n, err := p.read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", total, err)
		}
		total += n
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.engaged == 0 {
		t.Fatalf("pacing never engaged on a stream of %d small writes", 40000)
	}
	// A lone small write while paced (or not) still arrives, within the deadline's bound.
	start := time.Now()
	client.Write(msg[:10])
	n, err := p.read(buf)
	if err != nil || n != 10 {
		t.Fatalf("lone write: n=%d err=%v", n, err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("lone write took %v", d)
	}
	t.Logf("engaged %d, paused %d, mark %d", p.engaged, p.paused, p.mark)
	p.stop()
	if p.mark > 1 {
		t.Fatalf("mark %d after stop", p.mark)
	}
	client.Close()
	if _, err := p.read(buf); err != io.EOF {
		t.Fatalf("read after close: %v", err)
	}
}
