package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// KindData is the stream kind of the message bus: queue replication and, next, requests to
// and deliveries from queues led by other nodes.
const KindData byte = 'D'

// The bus carries small messages between nodes over one connection per ordered pair of nodes
// (this node's outbound link to each peer), in order, batched: a sender appends a frame to
// the link's buffer and a writer goroutine writes whatever has gathered with one write, so a
// busy link sends many messages per syscall and an idle one sends each at once. A frame is a
// u32 length, a topic byte and the payload. Handlers run on the reading goroutine of the
// peer's link, in the peer's order; they must not block for long.
//
// When a link breaks (either way), OnDown is called with the peer's name: messages in flight
// may be lost, so protocols on the bus restart their sessions with that peer (replication
// asks again where the logs agree).

// ErrPeerUnknown: no live member of that name with a node-to-node address.
var ErrPeerUnknown = errors.New("cluster: unknown peer")

// errLinkFull: the peer does not keep up (its link's buffer is over its bound).
var errLinkFull = errors.New("cluster: link to peer is full")

const (
	maxFrame          = 640 << 20 // a message of up to 512 MiB (RabbitMQ's max_message_size bound) travels in one frame
	defaultLinkBuffer = 64 << 20  // bytes waiting on one link before Send refuses
)

// maxLinkBuffer is defaultLinkBuffer (tests lower it).
var maxLinkBuffer = defaultLinkBuffer

// Handler takes a message from a peer (payload owned by the handler).
type Handler = func(peer string, payload []byte)

// Bus is the node's message bus.
type Bus struct {
	n   *Node
	log zerolog.Logger

	mu       sync.Mutex
	handlers map[byte]Handler
	links    map[string]*link
	inbound  map[string]*inLink // each peer's link to this node being read (serve)
	onDown   []func(peer string)
	closed   bool
	wg       sync.WaitGroup
}

func newBus(n *Node) *Bus {
	b := &Bus{n: n, log: n.log, handlers: map[byte]Handler{}, links: map[string]*link{}, inbound: map[string]*inLink{}}
	n.tr.handle(KindData, b.serve)
	return b
}

// Handle registers the handler of a topic (before messages for it arrive).
func (b *Bus) Handle(topic byte, h Handler) {
	b.mu.Lock()
	b.handlers[topic] = h
	b.mu.Unlock()
}

// OnDown registers a function called when the link with a peer breaks.
func (b *Bus) OnDown(fn func(peer string)) {
	b.mu.Lock()
	b.onDown = append(b.onDown, fn)
	b.mu.Unlock()
}

// Send queues a message to a peer; it does not wait for the network. It fails when the peer
// is unknown or its link is over its buffer bound (the caller treats both as a broken link).
func (b *Bus) Send(peer string, topic byte, payload []byte) error {
	l, err := b.link(peer)
	if err != nil {
		return err
	}
	return l.send(topic, payload)
}

// SendBuf is Send for a payload built in place: fill appends the payload to the given buffer
// (which already holds the frame header) and returns it. It avoids a copy per message.
func (b *Bus) SendBuf(peer string, topic byte, fill func([]byte) []byte) error {
	l, err := b.link(peer)
	if err != nil {
		return err
	}
	return l.sendFill(topic, fill)
}

func (b *Bus) link(peer string) (*link, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, net.ErrClosed
	}
	if l := b.links[peer]; l != nil {
		return l, nil
	}
	// A peer gossip does not (yet) see alive, but whose own link to us is open, is there: a
	// restarted node talks to us before every member has seen it rejoin, and its requests
	// want replies.
	addr := ""
	for _, m := range b.n.ml.members() {
		if m.Name == peer && (m.Status == "alive" || (b.inbound[peer] != nil && m.Status != "left")) {
			addr = m.RPC
		}
	}
	if addr == "" {
		return nil, ErrPeerUnknown
	}
	l := &link{b: b, peer: peer, addr: addr, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	b.links[peer] = l
	b.wg.Add(1)
	go l.run()
	return l, nil
}

func (b *Bus) down(peer string, l *link) {
	b.mu.Lock()
	if l != nil && b.links[peer] == l {
		delete(b.links, peer)
	}
	fns := append([]func(string){}, b.onDown...)
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return
	}
	for _, fn := range fns {
		fn(peer)
	}
}

func (b *Bus) close() {
	b.mu.Lock()
	b.closed = true
	ls := make([]*link, 0, len(b.links))
	for _, l := range b.links {
		ls = append(ls, l)
	}
	b.mu.Unlock()
	for _, l := range ls {
		l.shut()
	}
	b.wg.Wait()
}

// serve reads a peer's link: frames to handlers, in order.
//
// A peer dials a new link only once it gave up its previous one, so a new link replaces the
// one being read: that one is closed and its end handled (OnDown: protocols start over with
// the peer, a queue's home takes back what the peer's consumers held) before the new one is
// read. Otherwise, when the old link died in a partition without its close reaching us, the
// peer started over while we kept its old consumers and their unacked deliveries for ever.
func (b *Bus) serve(c net.Conn, peer string) {
	me := &inLink{c: c, done: make(chan struct{})}
	b.mu.Lock()
	old := b.inbound[peer]
	b.inbound[peer] = me
	b.mu.Unlock()
	if old != nil {
		old.c.Close()
		<-old.done
	}
	defer func() {
		c.Close()
		b.mu.Lock()
		if b.inbound[peer] == me {
			delete(b.inbound, peer)
		}
		b.mu.Unlock()
		close(me.done)
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > maxFrame {
			b.log.Warn().Str("peer", peer).Uint32("bytes", n).Msg("oversized bus frame")
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		b.mu.Lock()
		h := b.handlers[hdr[4]]
		b.mu.Unlock()
		if h != nil {
			h(peer, payload)
		}
	}
	b.down(peer, nil)
}

// inLink is a peer's link to this node, being read by serve.
type inLink struct {
	c    net.Conn
	done chan struct{} // closed once serve has handled its end
}

// link is this node's outbound connection to one peer.
type link struct {
	b    *Bus
	peer string
	addr string

	mu   sync.Mutex
	buf  []byte // frames waiting
	err  error  // set once the link broke: every later send fails
	wake chan struct{}
	stop chan struct{}
	once sync.Once
}

func (l *link) send(topic byte, payload []byte) error {
	return l.sendFill(topic, func(b []byte) []byte { return append(b, payload...) })
}

func (l *link) sendFill(topic byte, fill func([]byte) []byte) error {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return l.err
	}
	if len(l.buf) > maxLinkBuffer {
		// The link ends, but its end (OnDown) is handled on another goroutine: the sender
		// may hold locks the handlers take (a queue log's, a queue's), and a handler run
		// here would wait for them for ever.
		l.err = errLinkFull
		l.mu.Unlock()
		l.shut()
		go l.b.down(l.peer, l)
		return errLinkFull
	}
	start := len(l.buf)
	l.buf = append(l.buf, 0, 0, 0, 0, topic)
	l.buf = fill(l.buf)
	binary.BigEndian.PutUint32(l.buf[start:], uint32(len(l.buf)-start-5))
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

func (l *link) fail(err error) {
	l.mu.Lock()
	first := l.err == nil
	if first {
		l.err = err
	}
	l.mu.Unlock()
	if first {
		l.shut()
		l.b.down(l.peer, l)
	}
}

func (l *link) shut() { l.once.Do(func() { close(l.stop) }) }

// run dials the peer and writes what gathers, one write per batch.
func (l *link) run() {
	defer l.b.wg.Done()
	c, _, err := l.b.n.tr.dial(l.addr, KindData, 2*time.Second)
	if err != nil {
		l.fail(err)
		return
	}
	defer c.Close()
	// A broken peer is noticed by its reader (the connection closes); the writer only writes.
	go func() {
		io.Copy(io.Discard, c)
		l.fail(io.EOF)
	}()
	var out []byte
	for {
		select {
		case <-l.stop:
			return
		case <-l.wake:
		}
		l.mu.Lock()
		out, l.buf = l.buf, out[:0]
		l.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(out); err != nil {
			l.fail(err)
			return
		}
		if cap(out) > 4<<20 {
			out = nil // do not keep a burst's buffer
		}
	}
}
