package remote

import (
	"errors"
	"sync"
	"testing"
)

// hub is an in-memory node bus for tests: one ordered link per ordered pair of nodes, each
// delivered by its own goroutine, and links that can be cut (both ways: every frame queued on
// them is lost and both ends are told, as the real bus does when a connection breaks).
type hub struct {
	mu    sync.Mutex
	buses map[string]*memBus
	cut   map[[2]string]bool
	mute  map[[2]string]bool // frames from a to b are dropped silently (a paused node)
	wg    sync.WaitGroup
}

func newHub(t *testing.T) *hub {
	h := &hub{buses: map[string]*memBus{}, cut: map[[2]string]bool{}, mute: map[[2]string]bool{}}
	t.Cleanup(h.close)
	return h
}

func (h *hub) bus(name string) *memBus {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := &memBus{h: h, name: name, handlers: map[byte]func(string, []byte){}, links: map[string]*memLink{}}
	h.buses[name] = b
	return b
}

var errMemDown = errors.New("membus: link down")

// sever cuts the links between a and b (until heal) and tells both ends.
func (h *hub) sever(a, b string) {
	h.mu.Lock()
	h.cut[[2]string{a, b}], h.cut[[2]string{b, a}] = true, true
	ba, bb := h.buses[a], h.buses[b]
	h.mu.Unlock()
	ba.dropLink(b)
	bb.dropLink(a)
	ba.down(b)
	bb.down(a)
}

func (h *hub) heal(a, b string) {
	h.mu.Lock()
	delete(h.cut, [2]string{a, b})
	delete(h.cut, [2]string{b, a})
	h.mu.Unlock()
}

func (h *hub) close() {
	h.mu.Lock()
	var ls []*memLink
	for _, b := range h.buses {
		b.mu.Lock()
		for _, l := range b.links {
			ls = append(ls, l)
		}
		b.mu.Unlock()
	}
	h.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
	h.wg.Wait()
}

type memBus struct {
	h    *hub
	name string

	mu       sync.Mutex
	handlers map[byte]func(string, []byte)
	downs    []func(string)
	links    map[string]*memLink
}

type memLink struct {
	from, to *memBus
	mu       sync.Mutex
	cond     *sync.Cond
	q        [][]byte
	closed   bool
}

func (b *memBus) Handle(topic byte, fn func(string, []byte)) {
	b.mu.Lock()
	b.handlers[topic] = fn
	b.mu.Unlock()
}

func (b *memBus) OnDown(fn func(string)) {
	b.mu.Lock()
	b.downs = append(b.downs, fn)
	b.mu.Unlock()
}

func (b *memBus) down(peer string) {
	b.mu.Lock()
	fns := append([]func(string){}, b.downs...)
	b.mu.Unlock()
	for _, fn := range fns {
		fn(peer)
	}
}

func (b *memBus) dropLink(peer string) {
	b.mu.Lock()
	l := b.links[peer]
	delete(b.links, peer)
	b.mu.Unlock()
	if l != nil {
		l.close()
	}
}

func (b *memBus) Send(peer string, topic byte, payload []byte) error {
	return b.SendBuf(peer, topic, func(p []byte) []byte { return append(p, payload...) })
}

func (b *memBus) SendBuf(peer string, topic byte, fill func([]byte) []byte) error {
	h := b.h
	h.mu.Lock()
	to := h.buses[peer]
	cut := h.cut[[2]string{b.name, peer}]
	mute := h.mute[[2]string{b.name, peer}]
	h.mu.Unlock()
	if to == nil || cut {
		return errMemDown
	}
	if mute {
		return nil
	}
	b.mu.Lock()
	l := b.links[peer]
	if l == nil {
		l = &memLink{from: b, to: to}
		l.cond = sync.NewCond(&l.mu)
		b.links[peer] = l
		h.wg.Add(1)
		go l.run()
	}
	b.mu.Unlock()
	frame := fill([]byte{topic})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errMemDown
	}
	l.q = append(l.q, frame)
	l.cond.Signal()
	return nil
}

func (l *memLink) close() {
	l.mu.Lock()
	l.closed = true
	l.q = nil
	l.cond.Signal()
	l.mu.Unlock()
}

func (l *memLink) run() {
	defer l.from.h.wg.Done()
	for {
		l.mu.Lock()
		for len(l.q) == 0 && !l.closed {
			l.cond.Wait()
		}
		if l.closed {
			l.mu.Unlock()
			return
		}
		f := l.q[0]
		l.q[0] = nil
		l.q = l.q[1:]
		l.mu.Unlock()
		l.to.mu.Lock()
		fn := l.to.handlers[f[0]]
		l.to.mu.Unlock()
		if fn != nil {
			fn(l.from.name, f[1:])
		}
	}
}
