package clustertest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LinkFaults is what the proxy does to the bytes of one direction of a link between two nodes.
//
// A TCP proxy cannot lose or reorder bytes inside one connection without breaking the stream
// (real networks don't either: TCP retransmits and reorders back). So it shows packet loss the
// way TCP shows it to the application, as stalls, and reordering as overtaking between
// connections:
//   - Delay + a uniform random Jitter hold every chunk of bytes before it is forwarded; chunks of
//     one connection stay in order, chunks of different connections between the same nodes
//     overtake each other (reordering as the receiver sees it across connections).
//   - Loss is the probability that a chunk is "lost": it is forwarded one retransmission timeout
//     later (RTO, default 200 ms, doubling for consecutive losses on the connection, at most 3 s).
//   - Reset is the probability per chunk that the connection is reset (both ends get RST).
//   - Blocked holds everything (a silent partition through the proxy): new connections are
//     accepted but no byte goes through until it is cleared.
type LinkFaults struct {
	Delay   time.Duration
	Jitter  time.Duration
	Loss    float64
	RTO     time.Duration
	Reset   float64
	Blocked bool
}

func (f LinkFaults) String() string {
	if f.Blocked {
		return "blocked"
	}
	return fmt.Sprintf("delay=%v jitter=%v loss=%.2f reset=%.3f", f.Delay, f.Jitter, f.Loss, f.Reset)
}

// ProxyStats counts what a proxy did.
type ProxyStats struct {
	Conns  int64 // connections accepted
	Chunks int64 // chunks forwarded
	Bytes  int64
	Lost   int64 // chunks held back one RTO or more
	Resets int64 // connections reset
}

type linkKey struct{ from, to int }

// Proxy is a fault-injecting TCP proxy between nodes. Each node's node-to-node port gets one
// listener (Add); a connection's source node is recognised by its address (NameSource), so
// faults apply per direction of each pair (from → to). Node 0 stands for "any node": faults set
// for (0, to) apply to every source without its own setting, which is all a loopback harness can
// do (every connection comes from 127.0.0.1).
type Proxy struct {
	mu      sync.Mutex
	rng     *rand.Rand
	faults  map[linkKey]LinkFaults
	sources map[string]int
	lns     []net.Listener
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
	stats   struct{ conns, chunks, bytes, lost, resets atomic.Int64 }
}

// NewProxy returns a proxy whose random choices come from seed.
func NewProxy(seed int64) *Proxy {
	return &Proxy{
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x636861)),
		faults:  map[linkKey]LinkFaults{},
		sources: map[string]int{},
		conns:   map[net.Conn]struct{}{},
	}
}

// NameSource says that connections from ip come from node i.
func (p *Proxy) NameSource(ip string, i int) {
	p.mu.Lock()
	p.sources[ip] = i
	p.mu.Unlock()
}

// Add listens on listen for node `to` (in network namespace ns, "" for this one) and forwards
// each connection to target (dialled from the same namespace).
func (p *Proxy) Add(to int, ns, listen, target string) error {
	var ln net.Listener
	listenFn := func() error {
		var err error
		ln, err = net.Listen("tcp", listen)
		return err
	}
	var err error
	if ns != "" {
		err = inNetns(ns, listenFn)
	} else {
		err = listenFn()
	}
	if err != nil {
		return fmt.Errorf("clustertest: proxy listen %s: %w", listen, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return errors.New("clustertest: proxy closed")
	}
	p.lns = append(p.lns, ln)
	p.wg.Add(1)
	p.mu.Unlock()
	go p.accept(ln, to, ns, target)
	return nil
}

// Addr is the address of the k-th listener (for tests that add one on port 0).
func (p *Proxy) Addr(k int) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lns[k].Addr()
}

// Set sets the faults of the direction from → to (from 0: every source without its own).
func (p *Proxy) Set(from, to int, f LinkFaults) {
	p.mu.Lock()
	p.faults[linkKey{from, to}] = f
	p.mu.Unlock()
}

// Clear removes every fault; held chunks are released at once.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.faults = map[linkKey]LinkFaults{}
	p.mu.Unlock()
}

// Stats returns the counters so far.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{p.stats.conns.Load(), p.stats.chunks.Load(), p.stats.bytes.Load(), p.stats.lost.Load(), p.stats.resets.Load()}
}

func (p *Proxy) fault(from, to int) LinkFaults {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.faults[linkKey{from, to}]; ok {
		return f
	}
	return p.faults[linkKey{0, to}]
}

func (p *Proxy) float() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64()
}

// Close stops every listener and connection and waits for the proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for _, ln := range p.lns {
		ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		if p.closed {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) accept(ln net.Listener, to int, ns, target string) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.stats.conns.Add(1)
		from := 0
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			p.mu.Lock()
			from = p.sources[ta.IP.String()]
			p.mu.Unlock()
		}
		if !p.track(c, true) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c, from, to, ns, target)
		}()
	}
}

func (p *Proxy) serve(c net.Conn, from, to int, ns, target string) {
	defer func() { p.track(c, false); c.Close() }()
	var up net.Conn
	dial := func() error {
		var err error
		up, err = net.DialTimeout("tcp", target, 5*time.Second)
		return err
	}
	var err error
	if ns != "" {
		err = inNetns(ns, dial)
	} else {
		err = dial()
	}
	if err != nil {
		return
	}
	if !p.track(up, true) {
		up.Close()
		return
	}
	defer func() { p.track(up, false); up.Close() }()
	reset := make(chan struct{})
	var once sync.Once
	doReset := func() {
		once.Do(func() {
			p.stats.resets.Add(1)
			for _, x := range []net.Conn{c, up} {
				if tc, ok := x.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
			}
			close(reset)
			c.Close()
			up.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(c, up, from, to, reset, doReset) }()
	go func() { defer wg.Done(); p.pipe(up, c, to, from, reset, doReset) }()
	wg.Wait()
}

type chunk struct {
	b       []byte
	release time.Time
}

// pipe forwards src → dst as direction from → to: a reader stamps each chunk with its release
// time, a writer sends it then (in order).
func (p *Proxy) pipe(src, dst net.Conn, from, to int, reset chan struct{}, doReset func()) {
	q := make(chan chunk, 256)
	go func() {
		defer close(q)
		var last time.Time
		consecutive := 0
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				f := p.fault(from, to)
				if f.Reset > 0 && p.float() < f.Reset {
					doReset()
					return
				}
				rel := time.Now().Add(f.Delay)
				if f.Jitter > 0 {
					rel = rel.Add(time.Duration(p.float() * float64(f.Jitter)))
				}
				if f.Loss > 0 && p.float() < f.Loss {
					rto := f.RTO
					if rto == 0 {
						rto = 200 * time.Millisecond
					}
					rto <<= min(consecutive, 4)
					rto = min(rto, 3*time.Second)
					consecutive++
					rel = rel.Add(rto)
					p.stats.lost.Add(1)
				} else {
					consecutive = 0
				}
				if rel.Before(last) {
					rel = last // one connection's bytes stay in order
				}
				last = rel
				select {
				case q <- chunk{buf[:n], rel}:
				case <-reset:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for ck := range q {
		for {
			if p.fault(from, to).Blocked {
				select {
				case <-reset:
					return
				case <-time.After(10 * time.Millisecond):
					continue
				}
			}
			d := time.Until(ck.release)
			if d <= 0 || p.fault(from, to) == (LinkFaults{}) {
				break // released, or every fault cleared: send now
			}
			select {
			case <-reset:
				return
			case <-time.After(min(d, 50*time.Millisecond)):
			}
		}
		if _, err := dst.Write(ck.b); err != nil {
			doReset()
			return
		}
		p.stats.chunks.Add(1)
		p.stats.bytes.Add(int64(len(ck.b)))
	}
	// src closed: pass the half-close on.
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		io.Copy(io.Discard, src)
	}
}
