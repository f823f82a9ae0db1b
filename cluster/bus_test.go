package cluster

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

func TestBus_InOrderAndDownOnPeerLoss(t *testing.T) {
	a := startTestNode(t, "a", t.TempDir(), nil, 1)
	b := startTestNode(t, "b", t.TempDir(), nil, 0, a.GossipAddr())
	defer a.Close()
	waitPeerAlive(t, a, "b")
	const n = 20000
	var mu sync.Mutex
	var got []uint64
	done := make(chan struct{})
	b.Bus().Handle('t', func(peer string, p []byte) {
		mu.Lock()
		got = append(got, binary.BigEndian.Uint64(p))
		if len(got) == n {
			close(done)
		}
		mu.Unlock()
		if peer != "a" {
			t.Errorf("from %q", peer)
		}
	})
	downs := make(chan string, 4)
	a.Bus().OnDown(func(p string) { downs <- p })
	for i := range uint64(n) {
		if err := a.Bus().Send("b", 't', binary.BigEndian.AppendUint64(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d messages arrived", len(got), n)
	}
	for i, v := range got {
		if v != uint64(i) {
			t.Fatalf("message %d is %d: out of order", i, v)
		}
	}
	b.Close()
	select {
	case p := <-downs:
		if p != "b" {
			t.Fatalf("down for %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no down after the peer stopped")
	}
	if err := a.Bus().Send("nobody", 't', nil); err == nil {
		t.Fatal("send to an unknown peer succeeded")
	}
}

func BenchmarkBus_Send(b *testing.B) {
	x := startBenchNode(b, "x")
	y := startBenchNode(b, "y", x.GossipAddr())
	defer x.Close()
	defer y.Close()
	for {
		ok := false
		for _, m := range x.Members() {
			ok = ok || (m.Name == "y" && m.RPC != "")
		}
		if ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var wg sync.WaitGroup
	y.Bus().Handle('t', func(string, []byte) { wg.Done() })
	payload := make([]byte, 1024)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		if err := x.Bus().Send("y", 't', payload); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}

// A peer's new link replaces the one being read: the old one ends and OnDown runs (protocols
// start over with the peer) before anything on the new link is handled. Before, a link that
// died in a partition without its close reaching this side stayed "up" here while the peer
// started over, and a queue home kept the peer's old consumers and their unacked deliveries.
func TestBus_NewLinkFromAPeerReplacesTheOldOne(t *testing.T) {
	b := &Bus{handlers: map[byte]Handler{}, links: map[string]*link{}, inbound: map[string]*inLink{}}
	var mu sync.Mutex
	var events []string
	b.Handle('t', func(peer string, p []byte) {
		mu.Lock()
		events = append(events, "msg "+string(p))
		mu.Unlock()
	})
	b.OnDown(func(peer string) {
		mu.Lock()
		events = append(events, "down "+peer)
		mu.Unlock()
	})
	frame := func(s string) []byte {
		f := make([]byte, 5, 5+len(s))
		binary.BigEndian.PutUint32(f, uint32(len(s)))
		f[4] = 't'
		return append(f, s...)
	}
	oldLocal, oldRemote := net.Pipe()
	oldDone := make(chan struct{})
	go func() { b.serve(oldLocal, "a"); close(oldDone) }()
	oldRemote.Write(frame("1"))
	newLocal, newRemote := net.Pipe()
	newDone := make(chan struct{})
	go func() { b.serve(newLocal, "a"); close(newDone) }()
	newRemote.Write(frame("2")) // returns once the new serve reads it
	select {
	case <-oldDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the old link is still read after the peer's new one came")
	}
	newRemote.Close()
	<-newDone
	mu.Lock()
	defer mu.Unlock()
	want := []string{"msg 1", "down a", "msg 2", "down a"}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", events, want)
	}
}

// A send that finds the link's buffer full ends the link. Its end must not be handled on the
// sender's goroutine: senders hold locks (a queue log's) that the OnDown handlers take, and
// the node would stop for good (seen as a node whose every queue and its HTTP hung after a
// partition).
func TestBus_FullLinkEndsWithoutRunningOnDownInTheSender(t *testing.T) {
	old := maxLinkBuffer
	maxLinkBuffer = 1 << 20
	defer func() { maxLinkBuffer = old }()
	a := startTestNode(t, "a", t.TempDir(), nil, 1)
	b := startTestNode(t, "b", t.TempDir(), nil, 0, a.GossipAddr())
	defer a.Close()
	defer b.Close()
	waitPeerAlive(t, a, "b")
	block := make(chan struct{})
	defer close(block)
	b.Bus().Handle('t', func(string, []byte) { <-block }) // b stops reading
	var mu sync.Mutex                                     // a lock the sender holds and the OnDown handler takes
	downs := make(chan string, 4)
	a.Bus().OnDown(func(p string) {
		mu.Lock()
		mu.Unlock()
		downs <- p
	})
	payload := make([]byte, 64<<10)
	result := make(chan error, 1)
	go func() {
		mu.Lock()
		defer mu.Unlock()
		for range 100000 {
			if err := a.Bus().Send("b", 't', payload); err != nil {
				result <- err
				return
			}
		}
		result <- nil
	}()
	select {
	case err := <-result:
		if err != errLinkFull {
			t.Fatalf("send: %v, want the link full", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sender is stuck: the link's end was handled on its goroutine")
	}
	select {
	case p := <-downs:
		if p != "b" {
			t.Fatalf("down for %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnDown for the full link")
	}
}

// waitPeerAlive waits until n's gossip sees peer alive with its node-to-node address.
func waitPeerAlive(t *testing.T, n *testNode, peer string) {
	t.Helper()
	waitFor(t, 10*time.Second, peer+" known to "+n.Name(), func() bool {
		for _, m := range n.Members() {
			if m.Name == peer && m.Status == "alive" && m.RPC != "" {
				return true
			}
		}
		return false
	})
}
