package clustertest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink accepts connections and records every line it reads, in arrival order across
// connections, and echoes each line back.
type sink struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
}

func newSink(t *testing.T) *sink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					s.mu.Lock()
					s.lines = append(s.lines, strings.TrimSpace(l))
					s.mu.Unlock()
					c.Write([]byte(l))
				}
			}()
		}
	}()
	return s
}

func (s *sink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// proxied starts a proxy to a sink as node 1's port and returns both.
func proxied(t *testing.T) (*Proxy, *sink, string) {
	s := newSink(t)
	p := NewProxy(42)
	if err := p.Add(1, "", "127.0.0.1:0", s.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, s, p.Addr(0).String()
}

func dialT(t *testing.T, addr string) net.Conn {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rtt sends one line and waits for its echo.
func rtt(t *testing.T, c net.Conn, r *bufio.Reader, line string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != line {
		t.Fatalf("echo %q: %q %v", line, got, err)
	}
	return time.Since(start)
}

func TestProxy_Delay(t *testing.T) {
	p, _, addr := proxied(t)
	c := dialT(t, addr)
	r := bufio.NewReader(c)
	base := rtt(t, c, r, "warm")
	p.Set(0, 1, LinkFaults{Delay: 150 * time.Millisecond}) // towards node 1 only
	d := rtt(t, c, r, "slow")
	if d < 150*time.Millisecond {
		t.Errorf("round trip with 150ms delay took %v (without: %v)", d, base)
	}
	p.Clear()
	if d := rtt(t, c, r, "fast"); d >= 150*time.Millisecond {
		t.Errorf("round trip after Clear took %v", d)
	}
}

// TestProxy_LossStallsButKeepsTheStream: lost chunks arrive an RTO late, every byte in order.
func TestProxy_LossStallsButKeepsTheStream(t *testing.T) {
	p, s, addr := proxied(t)
	c := dialT(t, addr)
	r := bufio.NewReader(c)
	p.Set(0, 1, LinkFaults{Loss: 1, RTO: 100 * time.Millisecond})
	d := rtt(t, c, r, "m0")
	if d < 100*time.Millisecond {
		t.Errorf("a lost chunk came back after %v, want ≥ one RTO (100ms)", d)
	}
	p.Set(0, 1, LinkFaults{Loss: 0.5, RTO: 20 * time.Millisecond})
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(c, "m%d\n", i)
		time.Sleep(time.Millisecond)
	}
	for i := 1; i <= 30; i++ {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if l, err := r.ReadString('\n'); err != nil || l != fmt.Sprintf("m%d\n", i) {
			t.Fatalf("echo %d: %q %v", i, l, err)
		}
	}
	if st := p.Stats(); st.Lost < 2 {
		t.Errorf("stats %+v: want lost chunks counted", st)
	}
	if g := s.got(); len(g) != 31 {
		t.Errorf("sink got %d lines", len(g))
	}
}

// TestProxy_JitterReordersAcrossConnections: with jitter, a line sent later on another
// connection overtakes an earlier one; without faults, lines on one connection keep order.
func TestProxy_JitterReordersAcrossConnections(t *testing.T) {
	p, s, addr := proxied(t)
	a, b := dialT(t, addr), dialT(t, addr)
	p.Set(0, 1, LinkFaults{Jitter: 80 * time.Millisecond})
	const rounds = 30
	for i := 0; i < rounds; i++ {
		fmt.Fprintf(a, "a%d\n", i)
		fmt.Fprintf(b, "b%d\n", i)
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.got()) < 2*rounds && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := s.got()
	if len(got) != 2*rounds {
		t.Fatalf("got %d lines", len(got))
	}
	pos := map[string]int{}
	for i, l := range got {
		pos[l] = i
	}
	overtaken := 0
	for i := 0; i < rounds; i++ {
		if pos[fmt.Sprintf("b%d", i)] < pos[fmt.Sprintf("a%d", i)] {
			overtaken++ // b_i was sent after a_i
		}
	}
	if overtaken == 0 {
		t.Errorf("no reordering across connections with 80ms jitter: %v", got)
	}
	// Within each connection the order is kept.
	for _, prefix := range []string{"a", "b"} {
		last := -1
		for i := 0; i < rounds; i++ {
			if p := pos[fmt.Sprintf("%s%d", prefix, i)]; p < last {
				t.Errorf("connection %s reordered at %d", prefix, i)
			} else {
				last = p
			}
		}
	}
	t.Logf("%d of %d pairs reordered", overtaken, rounds)
}

func TestProxy_BlockedHoldsUntilCleared(t *testing.T) {
	p, s, addr := proxied(t)
	p.Set(0, 1, LinkFaults{Blocked: true})
	c := dialT(t, addr)
	fmt.Fprintf(c, "held\n")
	time.Sleep(300 * time.Millisecond)
	if g := s.got(); len(g) != 0 {
		t.Fatalf("blocked link delivered %v", g)
	}
	p.Clear()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := s.got(); len(g) != 1 || g[0] != "held" {
		t.Errorf("after Clear: %v", g)
	}
}

func TestProxy_ResetClosesBothEnds(t *testing.T) {
	p, _, addr := proxied(t)
	c := dialT(t, addr)
	p.Set(0, 1, LinkFaults{Reset: 1})
	fmt.Fprintf(c, "boom\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c)
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("read after reset: %v, want connection reset", err)
	}
	if st := p.Stats(); st.Resets != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestProxy_DirectionsAndSources: faults set for one source node apply to it only; the
// reverse direction is separate.
func TestProxy_DirectionsAndSources(t *testing.T) {
	p, _, addr := proxied(t)
	p.NameSource("127.0.0.1", 2) // every local connection now counts as from node 2
	c := dialT(t, addr)
	r := bufio.NewReader(c)
	p.Set(3, 1, LinkFaults{Delay: 300 * time.Millisecond}) // another source: no effect
	if d := rtt(t, c, r, "x"); d >= 300*time.Millisecond {
		t.Errorf("fault of node 3 slowed node 2: %v", d)
	}
	p.Set(1, 2, LinkFaults{Delay: 150 * time.Millisecond}) // replies 1 → 2
	if d := rtt(t, c, r, "y"); d < 150*time.Millisecond {
		t.Errorf("reply direction not delayed: %v", d)
	}
}
