package cluster

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Stream kinds: the first thing a node-to-node connection says after the handshake is what it
// carries, and the listener hands it to that kind's handler.
const (
	KindRaft    byte = 'R' // hashicorp/raft's RPCs
	KindPropose byte = 'P' // a metadata change forwarded to the Raft leader
)

// ErrAuth is returned when the other side of a node-to-node connection does not prove that it
// holds the cluster key (or holds a key when this node has none, or the reverse).
var ErrAuth = errors.New("cluster: peer failed authentication (different or missing cluster key)")

const (
	handshakeMagic   = "WRN1"
	handshakeTimeout = 5 * time.Second
	nonceLen         = 16
)

// transport is the node-to-node listener and dialer. Every connection starts with a mutual
// challenge-response over the cluster key (HMAC-SHA256 of both nonces, the stream kind and
// both node names, with a different label per direction), so a process without the key can
// neither open a stream to this node nor accept one from it.
type transport struct {
	name string
	key  []byte
	ln   net.Listener
	log  zerolog.Logger

	mu       sync.Mutex
	handlers map[byte]func(c net.Conn, peer string)
	conns    map[net.Conn]struct{} // accepted, closed at shutdown
	closed   bool
	wg       sync.WaitGroup
}

func listenTransport(addr, name string, key []byte, log zerolog.Logger) (*transport, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: rpc listen: %w", err)
	}
	t := &transport{name: name, key: key, ln: ln, log: log, handlers: map[byte]func(net.Conn, string){}, conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// handle registers the handler of a stream kind; it owns the connection it is given.
func (t *transport) handle(kind byte, fn func(c net.Conn, peer string)) {
	t.mu.Lock()
	t.handlers[kind] = fn
	t.mu.Unlock()
}

func (t *transport) addr() net.Addr { return t.ln.Addr() }

func (t *transport) close() {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.ln.Close()
	t.wg.Wait()
}

func (t *transport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.serve(c)
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
		}()
	}
}

func (t *transport) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	kind, peer, err := t.serverHandshake(c)
	if err != nil {
		t.log.Warn().Err(err).Str("remote", c.RemoteAddr().String()).Msg("node-to-node connection refused")
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	t.mu.Lock()
	h := t.handlers[kind]
	t.mu.Unlock()
	h(c, peer) // serverHandshake refused unknown kinds
}

// dial opens an authenticated stream of the given kind to the node listening at addr.
func (t *transport) dial(addr string, kind byte, timeout time.Duration) (net.Conn, string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, "", err
	}
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	peer, err := t.clientHandshake(c, kind)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	c.SetDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return c, peer, nil
}

func (t *transport) mac(label string, nonceA, nonceB []byte, kind byte, client, server string) []byte {
	h := hmac.New(sha256.New, t.key)
	io.WriteString(h, label)
	h.Write(nonceA)
	h.Write(nonceB)
	h.Write([]byte{kind, byte(len(client))})
	io.WriteString(h, client)
	h.Write([]byte{byte(len(server))})
	io.WriteString(h, server)
	return h.Sum(nil)
}

// clientHandshake: C→S magic kind name cnonce; S→C status name snonce smac; C→S cmac; S→C ok.
func (t *transport) clientHandshake(c net.Conn, kind byte) (string, error) {
	cn := make([]byte, nonceLen)
	rand.Read(cn)
	msg := append([]byte(handshakeMagic), kind, byte(len(t.name)))
	msg = append(msg, t.name...)
	msg = append(msg, cn...)
	if _, err := c.Write(msg); err != nil {
		return "", err
	}
	// No read-ahead on this side: the bytes after the handshake belong to the stream.
	var r io.Reader = c
	status, err := readByte(r)
	if err != nil {
		return "", err
	}
	if status != 0 {
		return "", fmt.Errorf("cluster: peer refused stream kind %q", kind)
	}
	server, err := readName(r)
	if err != nil {
		return "", err
	}
	sn := make([]byte, nonceLen)
	smac := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, sn); err != nil {
		return "", err
	}
	if _, err := io.ReadFull(r, smac); err != nil {
		return "", err
	}
	if !hmac.Equal(smac, t.mac("warren-server", cn, sn, kind, t.name, server)) {
		return "", ErrAuth
	}
	if _, err := c.Write(t.mac("warren-client", sn, cn, kind, t.name, server)); err != nil {
		return "", err
	}
	ok, err := readByte(r)
	if err != nil {
		return "", ErrAuth // the server hangs up on a wrong proof
	}
	if ok != 1 {
		return "", ErrAuth
	}
	return server, nil
}

func (t *transport) serverHandshake(c net.Conn) (byte, string, error) {
	r := bufio.NewReaderSize(c, 128)
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, "", err
	}
	if string(hdr[:4]) != handshakeMagic {
		return 0, "", errors.New("cluster: not a warren node-to-node connection")
	}
	kind := hdr[4]
	client, err := readName(r)
	if err != nil {
		return 0, "", err
	}
	cn := make([]byte, nonceLen)
	if _, err := io.ReadFull(r, cn); err != nil {
		return 0, "", err
	}
	t.mu.Lock()
	_, known := t.handlers[kind]
	t.mu.Unlock()
	if !known {
		c.Write([]byte{1})
		return 0, "", fmt.Errorf("cluster: unknown stream kind %q", kind)
	}
	sn := make([]byte, nonceLen)
	rand.Read(sn)
	msg := append([]byte{0, byte(len(t.name))}, t.name...)
	msg = append(msg, sn...)
	msg = append(msg, t.mac("warren-server", cn, sn, kind, client, t.name)...)
	if _, err := c.Write(msg); err != nil {
		return 0, "", err
	}
	cmac := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, cmac); err != nil {
		return 0, "", err
	}
	if !hmac.Equal(cmac, t.mac("warren-client", sn, cn, kind, client, t.name)) {
		return 0, "", fmt.Errorf("%w: node %q", ErrAuth, client)
	}
	if r.Buffered() > 0 {
		return 0, "", errors.New("cluster: data before the handshake ended")
	}
	if _, err := c.Write([]byte{1}); err != nil {
		return 0, "", err
	}
	return kind, client, nil
}

func readByte(r io.Reader) (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(r, b[:])
	return b[0], err
}

func readName(r io.Reader) (string, error) {
	n, err := readByte(r)
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// streamLayer gives hashicorp/raft its connections through the transport (raft.StreamLayer).
type streamLayer struct {
	t      *transport
	ch     chan net.Conn
	done   chan struct{}
	once   sync.Once
	advert net.Addr
}

func newStreamLayer(t *transport, advertise net.Addr) *streamLayer {
	s := &streamLayer{t: t, ch: make(chan net.Conn), done: make(chan struct{}), advert: advertise}
	t.handle(KindRaft, func(c net.Conn, _ string) {
		select {
		case s.ch <- c:
		case <-s.done:
			c.Close()
		}
	})
	return s
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.advert }
