package session

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
	"github.com/warrenmq/warren/broker/vhost"
)

// Conn is one client connection.
type Conn struct {
	env    *Env
	nc     net.Conn
	id     uint64
	log    zerolog.Logger
	fr     *amqp.FrameReader
	pacer  *readPacer
	dec    amqp.Decoder
	remote string

	// Set during the handshake, then read-only.
	vh            *vhost.VHost
	user          string
	frameMax      uint32
	channelMax    uint16
	heartbeat     uint16
	clientProps   amqp.Table
	connectedAt   time.Time
	clientSupport struct{ cancelNotify, authFailureClose, blocked bool }

	// Reader goroutine only.
	channels  map[uint16]*Channel
	closing   bool       // we sent connection.close and wait for close-ok
	closeWhy  string     // why the connection ended, for the log line that says it closed
	dirty     []*Channel // channels with confirms to flush at the end of a read batch
	exclusive []queue.Ref

	chMu sync.RWMutex // guards writes to channels, so management can list them; the reader reads without

	outMu     sync.Mutex
	out       []byte
	refs      []outRef    // large bodies written from their messages (outbuf.go)
	refBytes  int         // their bytes, counted with out against OutBufferLimit
	blocked   []queue.Ref // queues refused for a full buffer, kicked after the next write
	outClosed bool

	wmu       sync.Mutex // serialises taking the buffer and writing it (writer vs. flushNow)
	spare     []byte     // guarded by wmu, as the rest of this group
	spareRefs []outRef
	segs      [][]byte // writeOut's scratch
	scratch   []byte   // writeCoalesced's
	wake      chan struct{}
	done      chan struct{} // closed when the reader finishes: stops the writer
	shut      chan struct{} // closed by Shutdown: wakes a reader blocked by an alarm
	// unconfirmed is the size of this connection's publishes waiting for their log writes;
	// over Env.MaxUnconfirmedBytes the reader stops reading until the logs catch up.
	unconfirmed     atomic.Int64
	unconfirmedWake chan struct{}
	shutOnce        sync.Once
	shutWhy         atomic.Pointer[string] // the reason given to Shutdown, for the close log line
	writerWG        sync.WaitGroup
	lastSend        atomic.Int64 // unix nanos of the last write (heartbeat decisions)
	hb              heartbeats
	readPaused      atomic.Bool // the reader waits (alarm, unconfirmed writes): heartbeats are not missed

	// Counters for management.
	RecvBytes atomic.Uint64
	SentBytes atomic.Uint64
}

// NewConn wraps an accepted network connection.
func NewConn(env *Env, nc net.Conn, id uint64) *Conn {
	env.setDefaults()
	c := &Conn{
		env: env, nc: nc, id: id, remote: nc.RemoteAddr().String(),
		channels: make(map[uint16]*Channel),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		shut:     make(chan struct{}),

		unconfirmedWake: make(chan struct{}, 1),
	}
	c.log = env.Log.With().Uint64("conn_id", id).Str("remote", c.remote).Logger()
	return c
}

// ID returns the connection id.
func (c *Conn) ID() uint64 { return c.id }

// User returns the authenticated user name.
func (c *Conn) User() string { return c.user }

// VHostName returns the vhost name ("" before connection.open).
func (c *Conn) VHostName() string {
	if c.vh == nil {
		return ""
	}
	return c.vh.Name
}

// Remote returns the peer address.
func (c *Conn) Remote() string { return c.remote }

// ClientProperties returns the client's properties from connection.start-ok.
func (c *Conn) ClientProperties() amqp.Table { return c.clientProps }

// write writes buf to the socket (with raw syscalls on TCP, see readPacer.sysWrite). A socket
// that takes no byte for the pacer's send timeout fails the write (errSendTimeout).
func (c *Conn) write(buf []byte) (int, error) {
	p := c.pacer
	switch {
	case p.raw != nil:
		return p.sysWrite(buf)
	case p.inner != nil && p.inner.raw != nil, p.sendTimeout <= 0:
		return c.nc.Write(buf) // TLS over a paced TCP connection: its writes bound the wait
	}
	// Other connections (TLS without a paced connection below, pipes): a deadline per chunk.
	done := 0
	for done < len(buf) {
		c.nc.SetWriteDeadline(time.Now().Add(p.sendTimeout))
		n, err := c.nc.Write(buf[done:min(len(buf), done+rawWriteChunk)])
		done += n
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = errSendTimeout
			}
			return done, err
		}
	}
	return done, nil
}

// countingReader counts received bytes; the heartbeat timer watches the count to drop a
// client silent for two heartbeat intervals (spec 4.2.7), so reads need no deadline.
// Reads go through the connection's read pacer (readpace.go).
type countingReader struct{ c *Conn }

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.c.pacer.read(p)
	r.c.RecvBytes.Add(uint64(n))
	return n, err
}

// Serve runs the connection until it ends; it closes the network connection and releases
// everything the connection held.
func (c *Conn) Serve() {
	c.pacer = newReadPacer(c.nc)
	c.fr = amqp.NewFrameReader(countingReader{c}, 16<<10)
	defer c.nc.Close()
	if err := c.handshake(); err != nil {
		c.log.Debug().Err(err).Msg("handshake failed")
		if c.vh != nil && c.env.OpenVHost != nil && c.env.Unregistered != nil {
			c.env.Unregistered(c) // OpenVHost tracked it
		}
		return
	}
	if c.env.Registered != nil && !c.env.Registered(c) {
		why := ShutdownError()
		if c.env.Draining != nil && c.env.Draining() {
			why = DrainError()
		}
		c.handshakeFail(why)
		if c.env.Unregistered != nil {
			c.env.Unregistered(c)
		}
		c.log.Info().Str("reason", "closed by the server: 320 "+why.(*amqp.Error).Text).Msg("connection closed")
		return
	}
	c.pacer.setSendTimeout(max(0, c.env.SendTimeout))
	c.startHeartbeats()
	c.writerWG.Add(1)
	go c.writeLoop()
	err := c.readLoop()
	c.stopHeartbeats()
	c.teardown()
	close(c.done)
	c.writerWG.Wait()
	if c.env.Unregistered != nil {
		c.env.Unregistered(c)
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log.Debug().Err(err).Msg("connection ended")
	}
	why := c.closeWhy
	switch {
	case why != "":
	case c.shutWhy.Load() != nil:
		why = *c.shutWhy.Load()
	case err == nil || errors.Is(err, io.EOF):
		why = "client unexpectedly closed TCP connection"
	default:
		why = err.Error()
	}
	c.log.Info().Str("reason", why).Msg("connection closed")
}

// handshake runs protocol header, start/start-ok, tune/tune-ok and open/open-ok (spec 4.2.2,
// 4.2.3) synchronously, writing straight to the socket.
func (c *Conn) handshake() error {
	c.nc.SetDeadline(time.Now().Add(c.env.HandshakeTimeout))
	defer c.nc.SetDeadline(time.Time{})
	var h [8]byte
	if err := c.fr.ReadProtocolHeader(&h); err != nil {
		return err
	}
	if !amqp.SpeaksProtocol(h[:]) {
		c.nc.Write(amqp.ProtocolHeader)
		return errors.New("session: bad protocol header")
	}
	caps := amqp.Table{
		"publisher_confirms": true, "exchange_exchange_bindings": true, "basic.nack": true,
		"consumer_cancel_notify": true, "connection.blocked": true, "consumer_priorities": true,
		"authentication_failure_close": true, "per_consumer_qos": true, "direct_reply_to": true,
	}
	start := &amqp.ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: amqp.Table{
			"product": c.env.Product, "version": c.env.Version, "platform": c.env.Platform,
			"copyright": "Warren authors", "information": c.env.Platform + ", an AMQP 0-9-1 broker that answers as RabbitMQ " + c.env.Version + " does",
			"capabilities": caps, "cluster_name": "warren",
		},
		Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US",
	}
	tlsConn, isTLS := c.nc.(*tls.Conn)
	if isTLS && c.env.AuthenticateExternal != nil {
		start.Mechanisms += " EXTERNAL" // as rabbit_auth_mechanism_ssl: offered on TLS connections
	}
	if _, err := c.nc.Write(amqp.AppendMethodFrame(nil, 0, start)); err != nil {
		return err
	}
	m, err := c.readHandshakeMethod()
	if err != nil {
		return err
	}
	so, ok := m.(*amqp.ConnectionStartOk)
	if !ok {
		return c.handshakeFail(amqp.ConnErr(amqp.CommandInvalid, "expected 'connection.start-ok', got '%s'", m.Name()))
	}
	c.clientProps = so.ClientProperties
	if caps, ok := so.ClientProperties["capabilities"].(amqp.Table); ok {
		c.clientSupport.cancelNotify, _ = caps["consumer_cancel_notify"].(bool)
		c.clientSupport.authFailureClose, _ = caps["authentication_failure_close"].(bool)
		c.clientSupport.blocked, _ = caps["connection.blocked"].(bool)
	}
	var user, pass string
	var authOK bool
	var reason string
	if so.Mechanism == "EXTERNAL" && isTLS && c.env.AuthenticateExternal != nil {
		user, reason = certUser(tlsConn.ConnectionState(), c.env.CertLoginFrom)
		if reason == "" {
			authOK, reason = c.env.AuthenticateExternal(user, c.nc.RemoteAddr())
		}
	} else {
		if user, pass, err = parseSASL(so.Mechanism, so.Response); err != nil {
			return c.handshakeFail(err)
		}
		authOK, reason = c.env.Authenticate(user, pass, c.nc.RemoteAddr())
	}
	if !authOK {
		c.log.Warn().Str("user", user).Str("mechanism", so.Mechanism).Str("reason", reason).Msg("authentication failed")
		err := amqp.ConnErr(amqp.AccessRefused, "Login was refused using authentication mechanism %s. For details see the broker logfile.", so.Mechanism)
		if !c.clientSupport.authFailureClose {
			return err // as RabbitMQ: without the capability the socket is just closed
		}
		return c.handshakeFail(err)
	}
	c.user = user
	tune := &amqp.ConnectionTune{ChannelMax: c.env.ChannelMax, FrameMax: c.env.FrameMax, Heartbeat: c.env.Heartbeat}
	if _, err := c.nc.Write(amqp.AppendMethodFrame(nil, 0, tune)); err != nil {
		return err
	}
	if m, err = c.readHandshakeMethod(); err != nil {
		return err
	}
	to, ok := m.(*amqp.ConnectionTuneOk)
	if !ok {
		return c.handshakeFail(amqp.ConnErr(amqp.CommandInvalid, "expected 'connection.tune-ok', got '%s'", m.Name()))
	}
	// RabbitMQ refuses tune-ok values of 0 ("no limit") or beyond what it offered.
	if to.FrameMax < amqp.FrameMinSize {
		return c.handshakeFail(amqp.ConnErr(amqp.NotAllowed, "frame_max=%d < %d min size", to.FrameMax, amqp.FrameMinSize))
	}
	if to.FrameMax > c.env.FrameMax {
		return c.handshakeFail(amqp.ConnErr(amqp.NotAllowed, "frame_max=%d > %d max size", to.FrameMax, c.env.FrameMax))
	}
	if to.ChannelMax == 0 || to.ChannelMax > c.env.ChannelMax {
		return c.handshakeFail(amqp.ConnErr(amqp.NotAllowed, "channel_max=%d outside 1..%d", to.ChannelMax, c.env.ChannelMax))
	}
	c.channelMax = to.ChannelMax
	c.frameMax = to.FrameMax
	c.heartbeat = to.Heartbeat
	c.fr.SetMaxFrameSize(c.frameMax)
	if m, err = c.readHandshakeMethod(); err != nil {
		return err
	}
	open, ok := m.(*amqp.ConnectionOpen)
	if !ok {
		return c.handshakeFail(amqp.ConnErr(amqp.CommandInvalid, "expected 'connection.open', got '%s'", m.Name()))
	}
	var vh *vhost.VHost
	if c.env.OpenVHost != nil {
		if vh, err = c.env.OpenVHost(c, open.VirtualHost); err != nil {
			return c.handshakeFail(err)
		}
	} else if vh = c.env.VHost(open.VirtualHost); vh == nil {
		return c.handshakeFail(&amqp.Error{Code: amqp.NotAllowed, Text: "NOT_ALLOWED - vhost " + open.VirtualHost + " not found", ClassID: 10, MethodID: 40, Scope: amqp.ScopeConnection})
	}
	c.vh = vh
	c.connectedAt = time.Now()
	lc := c.log.With().Str("vhost", vh.Name).Str("user", user)
	if name, ok := c.clientProps["connection_name"].(string); ok {
		lc = lc.Str("client_name", name)
	}
	c.log = lc.Logger()
	_, err = c.nc.Write(amqp.AppendMethodFrame(nil, 0, &amqp.ConnectionOpenOk{}))
	c.log.Info().Msg("connection opened")
	return err
}

// readHandshakeMethod reads the next method frame on channel 0, skipping heartbeats.
func (c *Conn) readHandshakeMethod() (amqp.Method, error) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) {
				return nil, c.handshakeFail(err)
			}
			return nil, err
		}
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		if f.Type != amqp.FrameMethod || f.Channel != 0 {
			return nil, c.handshakeFail(amqp.ConnErr(amqp.UnexpectedFrame, "expected method frame on channel 0 during handshake"))
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if errors.Is(err, amqp.ErrMalformedUTF8) && c.frameMax != 0 {
			return nil, c.handshakeFail(err) // connection.open: RabbitMQ sends connection.close
		}
		return m, err
	}
}

// handshakeFail sends connection.close for err and returns it.
func (c *Conn) handshakeFail(err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		cl := &amqp.ConnectionClose{ReplyCode: uint16(ae.Code), ReplyText: amqp.ReplyText(ae.Text), CauseClassID: ae.ClassID, CauseMethodID: ae.MethodID}
		c.nc.Write(amqp.AppendMethodFrame(nil, 0, cl))
		c.pacer.stop()
		// Give the client a moment to answer close-ok before we hang up.
		c.nc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			f, rerr := c.fr.ReadFrame()
			if rerr != nil || f.Type == amqp.FrameMethod && len(f.Payload) >= 4 && f.Payload[1] == 10 && f.Payload[3] == 51 {
				break
			}
		}
	}
	return err
}

func parseSASL(mech, resp string) (user, pass string, err error) {
	switch mech {
	case "PLAIN":
		parts := strings.Split(resp, "\x00")
		if len(parts) != 3 {
			return "", "", amqp.ConnErr(amqp.AccessRefused, "Login was refused using authentication mechanism PLAIN. For details see the broker logfile.")
		}
		return parts[1], parts[2], nil
	case "AMQPLAIN":
		// The response is a field table without its length prefix.
		b := make([]byte, 4+len(resp))
		b[0], b[1], b[2], b[3] = byte(len(resp)>>24), byte(len(resp)>>16), byte(len(resp)>>8), byte(len(resp))
		copy(b[4:], resp)
		t, _, terr := amqp.ReadTable(b)
		if terr != nil {
			return "", "", amqp.ConnErr(amqp.AccessRefused, "Login was refused using authentication mechanism AMQPLAIN. For details see the broker logfile.")
		}
		u, _ := t["LOGIN"].(string)
		p, _ := t["PASSWORD"].(string)
		return u, p, nil
	}
	return "", "", amqp.ConnErr(amqp.AccessRefused, "unsupported authentication mechanism '%s'", mech)
}

// readLoop reads and handles frames until the connection ends.
func (c *Conn) readLoop() error {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) {
				c.closeWithError(err)
				return c.drainUntilCloseOk()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.closing {
				c.log.Debug().Uint16("heartbeat", c.heartbeat).Msg("missed heartbeats, closing")
				c.closeWhy = "missed heartbeats from client"
				return err
			}
			return err
		}
		done, err := c.handleFrame(f)
		if err != nil {
			c.closeWithError(err)
			return c.drainUntilCloseOk()
		}
		if done {
			c.nc.SetReadDeadline(time.Now().Add(closeLinger))
			c.discardUntilEOF()
			return nil
		}
		if c.fr.Buffered() == 0 {
			c.flushConfirms()
		}
	}
}

// drainUntilCloseOk waits (bounded) for connection.close-ok after we sent connection.close,
// discarding what comes before it, then for the client to close its socket.
func (c *Conn) drainUntilCloseOk() error {
	c.pacer.stop()
	c.flushNow()
	c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) {
				c.discardUntilEOF() // frames we cannot parse: read on as bytes, still bounded
			}
			return nil
		}
		if f.Type == amqp.FrameMethod && f.Channel == 0 && len(f.Payload) >= 4 && f.Payload[1] == 10 && (f.Payload[3] == 51 || f.Payload[3] == 50) {
			if f.Payload[3] == 50 {
				c.send(0, &amqp.ConnectionCloseOk{})
				c.flushNow()
			}
			c.discardUntilEOF()
			return nil
		}
	}
}

// closeLinger bounds how long a connection whose close handshake is over keeps reading until
// its client closes the socket.
const closeLinger = 5 * time.Second

// discardUntilEOF reads and drops what the client still sends until it closes its socket or
// the read deadline passes. Closing a socket with unread bytes makes the kernel reset the
// connection, and a client still writing frames it had buffered (amqplib may send
// connection.close ahead of them) then fails with EPIPE or ECONNRESET, or loses the close-ok
// it was about to read. RabbitMQ too waits for the client to close first.
func (c *Conn) discardUntilEOF() {
	c.stopHeartbeats() // nothing more goes out after the close handshake
	c.pacer.stop()
	buf := make([]byte, 16<<10)
	r := countingReader{c}
	for {
		if _, err := r.Read(buf); err != nil {
			return
		}
	}
}

// closeWithError sends connection.close for a connection-level error.
func (c *Conn) closeWithError(err error) {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		ae = &amqp.Error{Code: amqp.InternalError, Text: "INTERNAL_ERROR - " + err.Error()}
	}
	c.log.Debug().Uint16("code", uint16(ae.Code)).Str("text", ae.Text).Msg("closing connection with error")
	c.closeWhy = fmt.Sprintf("closed by the server: %d %s", ae.Code, ae.Text)
	c.closing = true
	c.send(0, &amqp.ConnectionClose{ReplyCode: uint16(ae.Code), ReplyText: amqp.ReplyText(ae.Text), CauseClassID: ae.ClassID, CauseMethodID: ae.MethodID})
}

// ShutdownError is the error that refuses a connection completing its handshake while the
// broker shuts down (320, as RabbitMQ closes its connections then).
func ShutdownError() error {
	return &amqp.Error{Code: amqp.ConnectionForced, Text: "CONNECTION_FORCED - " + shutdownReason, Scope: amqp.ScopeConnection}
}

const shutdownReason = "broker forced connection closure with reason 'shutdown'"

// DrainReason is the close text of client connections on a node being drained.
const DrainReason = "node is being drained for maintenance"

// DrainError is the 320 a connection gets that finished its handshake while its node was
// being drained (it goes to another node).
func DrainError() error {
	return &amqp.Error{Code: amqp.ConnectionForced, Text: "CONNECTION_FORCED - " + DrainReason, Scope: amqp.ScopeConnection}
}

// Shutdown asks the connection to close with 320 CONNECTION_FORCED (broker shutdown or an
// operator's request); safe from any goroutine. The reader ends when the client answers or the
// socket closes after a grace period.
func (c *Conn) Shutdown(reason string) {
	c.shutOnce.Do(func() {
		why := "closed by the server: 320 CONNECTION_FORCED - " + reason
		c.shutWhy.Store(&why)
		close(c.shut)
	})
	c.send(0, &amqp.ConnectionClose{ReplyCode: uint16(amqp.ConnectionForced), ReplyText: "CONNECTION_FORCED - " + reason})
	// The writer sends it (not flushNow here: a writer stuck on a client that does not read
	// holds wmu until its send timeout, and Close shuts connections down one after another).
	go func() {
		select {
		case <-c.done:
		case <-time.After(3 * time.Second):
			c.nc.Close()
		}
	}()
}

// unconfirmedDone releases the bytes of a publish whose log writes completed.
func (c *Conn) unconfirmedDone(size int64) {
	if c.unconfirmed.Add(-size) <= int64(c.env.MaxUnconfirmedBytes) {
		select {
		case c.unconfirmedWake <- struct{}{}:
		default:
		}
	}
}

// waitUnconfirmed blocks the reader while the connection's publishes waiting for disk exceed
// the bound (credit flow, as RabbitMQ's: the client is throttled by TCP, nothing is refused).
func (c *Conn) waitUnconfirmed() {
	c.readPaused.Store(true)
	defer c.readPaused.Store(false)
	for c.unconfirmed.Load() > int64(c.env.MaxUnconfirmedBytes) {
		select {
		case <-c.unconfirmedWake:
		case <-c.shut:
			return
		case <-time.After(100 * time.Millisecond): // re-check: a wake may race the Load
		}
	}
}

// waitAlarm blocks the reader while a resource alarm is active (RabbitMQ blocks publishing
// connections): connection.blocked first when the client supports it, connection.unblocked
// after. Called before a basic.publish is handled.
func (c *Conn) waitAlarm() {
	reason, cleared := c.env.Alarm()
	if reason == "" {
		return
	}
	if c.clientSupport.blocked {
		c.send(0, &amqp.ConnectionBlocked{Reason: "low on " + reason})
	}
	c.log.Debug().Str("reason", reason).Msg("connection blocked by alarm")
	c.readPaused.Store(true)
	defer c.readPaused.Store(false)
	for reason != "" {
		select {
		case <-cleared:
		case <-c.shut:
			return
		}
		reason, cleared = c.env.Alarm()
	}
	if c.clientSupport.blocked {
		c.send(0, &amqp.ConnectionUnblocked{})
	}
	c.log.Debug().Msg("connection unblocked")
}

// handleFrame dispatches one frame. done reports that the connection closed cleanly.
func (c *Conn) handleFrame(f amqp.Frame) (done bool, err error) {
	switch f.Type {
	case amqp.FrameHeartbeat:
		if f.Channel != 0 {
			return false, amqp.ConnErr(amqp.UnexpectedFrame, "heartbeat frame on channel %d", f.Channel)
		}
		if len(f.Payload) != 0 {
			return false, amqp.ConnErr(amqp.FrameError, "heartbeat frame with a payload of %d bytes", len(f.Payload))
		}
		return false, nil
	case amqp.FrameMethod:
		if f.Channel == 0 {
			return c.handleConnMethod(f.Payload)
		}
	}
	if c.closing {
		return false, nil // after connection.close, ignore everything but close/close-ok
	}
	if f.Channel == 0 {
		return false, amqp.ConnErr(amqp.UnexpectedFrame, "expected method frame on channel 0, got frame type %d", f.Type)
	}
	ch := c.channels[f.Channel]
	if ch == nil {
		if f.Type != amqp.FrameMethod {
			return false, amqp.ConnErr(amqp.ChannelError, "expected 'channel.open' on channel %d", f.Channel)
		}
		return false, c.openChannel(f.Channel, f.Payload)
	}
	return false, ch.handleFrame(f)
}

// openChannel handles a method on a channel that is not open: it must be channel.open.
func (c *Conn) openChannel(id uint16, payload []byte) error {
	m, err := c.dec.Decode(payload)
	if err != nil {
		return err
	}
	if _, ok := m.(*amqp.ChannelOpen); !ok {
		return &amqp.Error{Code: amqp.ChannelError, Text: "CHANNEL_ERROR - expected 'channel.open'", ClassID: m.ClassID(), MethodID: m.MethodID(), Scope: amqp.ScopeConnection}
	}
	if len(c.channels) >= int(c.channelMax) {
		return &amqp.Error{Code: amqp.NotAllowed, Text: "NOT_ALLOWED - number of channels opened (" + itoa(len(c.channels)) + ") has reached the negotiated channel_max (" + itoa(int(c.channelMax)) + ")", ClassID: 20, MethodID: 10, Scope: amqp.ScopeConnection}
	}
	if c.env.ChannelOpen != nil {
		if err := c.env.ChannelOpen(c.user); err != nil {
			if ae, ok := err.(*amqp.Error); ok {
				ae.ClassID, ae.MethodID, ae.Scope = 20, 10, amqp.ScopeConnection
			}
			return err
		}
	}
	ch := newChannel(c, id)
	c.chMu.Lock()
	c.channels[id] = ch
	c.chMu.Unlock()
	c.send(id, &amqp.ChannelOpenOk{})
	return nil
}

// dropChannel forgets a closed channel (and frees its place in the user's channel limit).
func (c *Conn) dropChannel(id uint16) {
	c.chMu.Lock()
	_, ok := c.channels[id]
	delete(c.channels, id)
	c.chMu.Unlock()
	if ok && c.env.ChannelClosed != nil {
		c.env.ChannelClosed(c.user)
	}
}

func (c *Conn) handleConnMethod(payload []byte) (bool, error) {
	m, err := c.dec.Decode(payload)
	if err != nil {
		return false, err
	}
	switch m := m.(type) {
	case *amqp.ConnectionClose:
		c.log.Debug().Uint16("code", m.ReplyCode).Str("text", m.ReplyText).Msg("client closed connection")
		c.closeWhy = fmt.Sprintf("client closed the connection: %d %s", m.ReplyCode, m.ReplyText)
		c.teardown()
		c.send(0, &amqp.ConnectionCloseOk{})
		c.flushNow()
		return true, nil
	case *amqp.ConnectionCloseOk:
		if c.closing {
			return true, nil
		}
		return false, nil
	case *amqp.ConnectionUpdateSecret:
		c.send(0, &amqp.ConnectionUpdateSecretOk{})
		return false, nil
	case *amqp.ConnectionBlocked, *amqp.ConnectionUnblocked:
		return false, nil
	}
	if c.closing {
		return false, nil
	}
	return false, &amqp.Error{Code: amqp.ChannelError, Text: "CHANNEL_ERROR - unexpected method '" + m.Name() + "' on channel 0", ClassID: m.ClassID(), MethodID: m.MethodID(), Scope: amqp.ScopeConnection}
}

// teardown releases every channel (consumers cancelled, unacked requeued) and deletes the
// connection's exclusive queues. Idempotent.
func (c *Conn) teardown() {
	for id, ch := range c.channels {
		ch.release()
		c.dropChannel(id)
	}
	for _, q := range c.exclusive {
		c.vh.DeleteQueueRef(q)
	}
	c.exclusive = nil
}

// send appends a method frame to the outbound buffer and wakes the writer.
func (c *Conn) send(ch uint16, m amqp.Method) {
	c.outMu.Lock()
	c.out = amqp.AppendMethodFrame(c.out, ch, m)
	c.outMu.Unlock()
	c.kick()
}

func (c *Conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flushNow writes the outbound buffer synchronously from the reader goroutine (used just
// before closing).
func (c *Conn) flushNow() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.outMu.Lock()
	buf, refs := c.takeOutLocked(nil, nil)
	c.outMu.Unlock()
	if len(buf) > 0 {
		timeout := c.pacer.sendTimeout
		c.pacer.setSendTimeout(2 * time.Second) // just before closing: do not wait long
		n, _ := c.writeOut(buf, refs)
		c.pacer.setSendTimeout(timeout)
		c.SentBytes.Add(uint64(n))
	}
}

// writeLoop drains the outbound buffer: everything appended while the previous write ran goes
// out in the next single write. A write that the client does not take for the send timeout
// closes the connection (the reader then ends it and requeues its unacked messages).
func (c *Conn) writeLoop() {
	defer c.writerWG.Done()
	for {
		stop := false
		select {
		case <-c.wake:
		case <-c.done:
			stop = true
		}
		c.wmu.Lock()
		c.outMu.Lock()
		buf, refs := c.takeOutLocked(c.spare[:0], c.spareRefs[:0])
		blocked := c.blocked
		c.blocked = nil
		if stop {
			c.outClosed = true
		}
		c.outMu.Unlock()
		if len(buf) > 0 {
			if stop {
				c.pacer.setSendTimeout(2 * time.Second) // the last words: do not linger
			}
			n, err := c.writeOut(buf, refs)
			c.SentBytes.Add(uint64(n))
			c.lastSend.Store(time.Now().UnixNano())
			if err != nil {
				if errors.Is(err, errSendTimeout) && !stop {
					c.log.Warn().Dur("send_timeout", c.env.SendTimeout).Int("written", n).Msg("client stopped reading, closing")
				}
				c.nc.Close() // the reader sees the error and ends the connection
				stop = true
			}
		}
		if cap(buf) <= 4<<20 {
			c.spare = buf[:0]
		} else {
			c.spare = nil
		}
		clear(refs) // the bodies are written: do not keep them alive
		if cap(refs) <= 4096 {
			c.spareRefs = refs[:0]
		} else {
			c.spareRefs = nil
		}
		c.wmu.Unlock()
		for _, q := range blocked {
			if !stop {
				q.Kick()
			}
		}
		if stop {
			return
		}
	}
}

// heartbeats is the connection's heartbeat timer (spec 4.2.7). It runs apart from the writer,
// which may be stuck on a client that does not read: every half interval it queues a heartbeat
// when nothing else went out, and it closes the socket once the client has sent nothing for
// two intervals (RabbitMQ: "missed heartbeats from client").
type heartbeats struct {
	mu         sync.Mutex
	t          *time.Timer
	stopped    bool
	lastRecv   uint64
	lastRecvAt time.Time
}

func (c *Conn) startHeartbeats() {
	if c.heartbeat == 0 {
		return
	}
	h := &c.hb
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastRecv, h.lastRecvAt = c.RecvBytes.Load(), time.Now()
	h.t = time.AfterFunc(time.Duration(c.heartbeat)*time.Second/2, c.heartbeatTick)
}

func (c *Conn) heartbeatTick() {
	h := &c.hb
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	hb := time.Duration(c.heartbeat) * time.Second
	now := time.Now()
	if n := c.RecvBytes.Load(); n != h.lastRecv || c.readPaused.Load() {
		// Bytes came in, or we are not reading (a blocked connection: RabbitMQ pauses its
		// heartbeat monitor then too).
		h.lastRecv, h.lastRecvAt = n, now
	} else if now.Sub(h.lastRecvAt) >= 2*hb {
		c.log.Warn().Uint16("heartbeat", c.heartbeat).Msg("missed heartbeats from client, closing")
		c.nc.Close() // the reader sees the error and ends the connection
		return
	}
	if now.Sub(time.Unix(0, c.lastSend.Load())) >= hb/2 {
		c.outMu.Lock()
		c.out = amqp.AppendHeartbeat(c.out)
		c.outMu.Unlock()
		c.kick()
	}
	h.t.Reset(hb / 2)
}

// stopHeartbeats stops the timer; no tick runs once it returns.
func (c *Conn) stopHeartbeats() {
	h := &c.hb
	h.mu.Lock()
	h.stopped = true
	if h.t != nil {
		h.t.Stop()
	}
	h.mu.Unlock()
}

// outFullLocked reports whether the outbound buffer is over its limit; with outMu held.
// The queue is remembered and kicked once the buffer drains.
func (c *Conn) outFullLocked(q queue.Ref) bool {
	if c.outClosed {
		return true
	}
	if len(c.out)+c.refBytes < c.env.OutBufferLimit {
		return false
	}
	for _, b := range c.blocked {
		if b == q {
			return true
		}
	}
	c.blocked = append(c.blocked, q)
	return true
}

// flushConfirms emits pending publisher confirms of every dirty channel (coalesced with
// multiple=true), at the end of a read batch.
func (c *Conn) flushConfirms() {
	for _, ch := range c.dirty {
		ch.flushConfirms()
	}
	clear(c.dirty)
	c.dirty = c.dirty[:0]
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	neg := i < 0
	if neg {
		i = -i
	}
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	if neg {
		n--
		b[n] = '-'
	}
	return string(b[n:])
}
