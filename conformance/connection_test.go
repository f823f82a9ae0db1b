package conformance

// Connection lifecycle (AMQP 0-9-1 §2.2.4, §4.2.2 and class "connection" §1.4): protocol header,
// start/start-ok, SASL, tune/tune-ok, open, heartbeats and close. Raw-socket helpers live in
// raw_test.go.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQP 0-9-1 §4.2.2: "If the server cannot support the protocol specified in the protocol header,
// it MUST respond with a valid protocol header and then close the socket connection."
// RabbitMQ answers any header it does not speak with the 0-9-1 header and closes.
func TestConnection_BadProtocolHeaderGetsSupportedHeader(t *testing.T) {
	t.Parallel()
	for name, hdr := range map[string]string{
		"amqp-0-0-8-0": "AMQP\x00\x00\x08\x00",
		"amqp-0-10":    "AMQP\x01\x01\x00\x0a",
		"amqp-9-9-9-9": "AMQP\x09\x09\x09\x09",
		"http":         "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"garbage":      "\x00\x01\x02\x03\x04\x05\x06\x07",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rc := rawConnect(t)
			rc.write([]byte(hdr))
			rc.c.SetReadDeadline(time.Now().Add(rawReadTimeout))
			got := make([]byte, len(rawProtocolHeader))
			if _, err := io.ReadFull(rc.r, got); err != nil {
				t.Fatalf("read protocol header: %v", err)
			}
			if !bytes.Equal(got, rawProtocolHeader) {
				t.Fatalf("server answered %q, want %q", got, rawProtocolHeader)
			}
			rc.expectEOF(rawReadTimeout)
		})
	}
}

// AMQP 0-9-1 §1.4.2.1 connection.start carries version 0-9, server-properties, mechanisms and
// locales. RabbitMQ advertises product/version and a capabilities table (see
// https://www.rabbitmq.com/connections.html#capabilities) that clients use to enable extensions.
func TestConnection_StartAdvertisesServerProperties(t *testing.T) {
	t.Parallel()
	c := dial(t)
	if c.Major != 0 || c.Minor != 9 {
		t.Errorf("version %d-%d, want 0-9", c.Major, c.Minor)
	}
	for _, k := range []string{"product", "version"} {
		if s, ok := c.Properties[k].(string); !ok || s == "" {
			t.Errorf("server property %q = %#v, want a non-empty longstr", k, c.Properties[k])
		}
	}
	// Clients pick semantics from product and version: kombu (Celery) reads basic.qos's global
	// flag RabbitMQ's way only from product "RabbitMQ" at 3.3 or later. Warren answers as
	// RabbitMQ does and names itself in platform.
	if p := c.Properties["product"]; p != "RabbitMQ" {
		t.Errorf("product %#v, want \"RabbitMQ\"", p)
	}
	var major, minor int
	if v, _ := c.Properties["version"].(string); v == "" {
		t.Errorf("version %#v", c.Properties["version"])
	} else if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || major < 3 || major == 3 && minor < 3 {
		t.Errorf("version %q, want 3.3 or later", v)
	}
	if p, _ := c.Properties["platform"].(string); !againstRabbit && !strings.HasPrefix(p, "Warren ") {
		t.Errorf("platform %q, want Warren's name and version", p)
	}
	caps, ok := c.Properties["capabilities"].(amqp.Table)
	if !ok {
		t.Fatalf("server property capabilities = %#v, want a table", c.Properties["capabilities"])
	}
	for _, k := range []string{"publisher_confirms", "exchange_exchange_bindings", "basic.nack",
		"consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
		"per_consumer_qos", "direct_reply_to"} {
		if v, ok := caps[k].(bool); !ok || !v {
			t.Errorf("capability %q = %#v, want true", k, caps[k])
		}
	}
	if !slices.Contains(c.Locales, "en_US") {
		t.Errorf("locales %q, want en_US", c.Locales)
	}
}

// AMQP 0-9-1 §1.4.2.1: mechanisms and locales are space-separated lists; RabbitMQ offers PLAIN
// and AMQPLAIN by default and the single locale en_US.
func TestConnection_StartOffersPlainAndAMQPlain(t *testing.T) {
	t.Parallel()
	rc := rawConnect(t)
	st := rc.startHandshake()
	if st.major != 0 || st.minor != 9 {
		t.Errorf("connection.start version %d-%d, want 0-9", st.major, st.minor)
	}
	mechs := strings.Fields(st.mechanisms)
	for _, m := range []string{"PLAIN", "AMQPLAIN"} {
		if !slices.Contains(mechs, m) {
			t.Errorf("mechanisms %q lack %s", st.mechanisms, m)
		}
	}
	if !slices.Contains(strings.Fields(st.locales), "en_US") {
		t.Errorf("locales %q lack en_US", st.locales)
	}
}

// AMQP 0-9-1 §1.4.2.2 start-ok selects a SASL mechanism; PLAIN (RFC 4616) and RabbitMQ's AMQPLAIN
// (a field table with LOGIN and PASSWORD) both authenticate guest/guest.
func TestConnection_SASLPlainAndAMQPlainSucceed(t *testing.T) {
	t.Parallel()
	for _, auth := range []amqp.Authentication{
		&amqp.PlainAuth{Username: "guest", Password: "guest"},
		&amqp.AMQPlainAuth{Username: "guest", Password: "guest"},
	} {
		t.Run(auth.Mechanism(), func(t *testing.T) {
			t.Parallel()
			c, err := amqp.DialConfig(brokerURL, amqp.Config{
				SASL: []amqp.Authentication{auth},
				Dial: amqp.DefaultDial(5 * time.Second),
			})
			if err != nil {
				t.Fatalf("dial with %s: %v", auth.Mechanism(), err)
			}
			defer c.Close()
			if got := c.Config.SASL[0].Mechanism(); got != auth.Mechanism() {
				t.Errorf("negotiated mechanism %s, want %s", got, auth.Mechanism())
			}
			ch, err := c.Channel()
			if err != nil {
				t.Fatalf("channel.open: %v", err)
			}
			if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
				t.Fatalf("queue.declare after %s login: %v", auth.Mechanism(), err)
			}
		})
	}
}

// AMQP 0-9-1 §1.4.2.2 / RabbitMQ auth-failure notifications
// (https://www.rabbitmq.com/auth-notification.html): a client that does not advertise the
// authentication_failure_close capability just sees the socket close (RabbitMQ waits a few
// seconds first), which amqp091-go reports as ErrCredentials.
func TestConnection_WrongPasswordClosesSocket(t *testing.T) {
	t.Parallel()
	u := strings.Replace(brokerURL, "guest:guest@", "guest:wrong-password@", 1)
	c, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(8 * time.Second)})
	if err == nil {
		c.Close()
		t.Fatal("dial with a wrong password succeeded")
	}
	if err != amqp.ErrCredentials {
		t.Fatalf("dial with a wrong password: %T %v, want amqp.ErrCredentials", err, err)
	}
}

// RabbitMQ auth-failure notifications: with the authentication_failure_close client capability
// the broker sends connection.close 403 ACCESS_REFUSED and closes the socket after close-ok.
func TestConnection_WrongPasswordWithAuthFailureCloseIsAccessRefused(t *testing.T) {
	t.Parallel()
	rc := rawConnect(t)
	rc.startHandshake()
	props := rawEncodeTable("product", "warren-conformance",
		"capabilities", rawEncodeTable("authentication_failure_close", true))
	rc.sendStartOk(props, "PLAIN", "\x00guest\x00wrong-password")
	rc.expectConnectionCloseCode(403)
}

// AMQP 0-9-1 §1.4.2.7 connection.open: a virtual host that does not exist (or the user may not
// use) is refused with 530 NOT_ALLOWED, a connection exception on connection.open.
func TestConnection_UnknownVhostIsNotAllowed(t *testing.T) {
	t.Parallel()
	t.Run("amqp091", func(t *testing.T) {
		t.Parallel()
		u := strings.TrimSuffix(brokerURL, "/") + "/" + uniqueName(t)
		c, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			c.Close()
			t.Fatal("dial to a missing vhost succeeded")
		}
		amqpErr(t, err, 530)
	})
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		rc := rawConnect(t)
		rc.startHandshake()
		rc.sendStartOk(nil, "PLAIN", rawPlainGuest)
		tn := rc.readTune()
		tn.heartbeat = 0
		rc.sendTuneOk(tn)
		rc.sendOpen(uniqueName(t))
		cl := rc.expectConnectionCloseCode(530)
		if cl.classID != 10 || cl.methodID != 40 {
			t.Errorf("close names method %d.%d, want 10.40 (connection.open)", cl.classID, cl.methodID)
		}
	})
}

// AMQP 0-9-1 §1.4.2.5 connection.tune proposes the server's limits. RabbitMQ's defaults are
// channel_max 2047, frame_max 131072 and heartbeat 60 s; clients size themselves from these.
func TestConnection_TuneProposesServerLimits(t *testing.T) {
	t.Parallel()
	rc := rawConnect(t)
	rc.startHandshake()
	rc.sendStartOk(nil, "PLAIN", rawPlainGuest)
	got := rc.readTune()
	want := rawTune{channelMax: 2047, frameMax: 131072, heartbeat: 60}
	if got != want {
		t.Fatalf("connection.tune %+v, want %+v", got, want)
	}
}

// AMQP 0-9-1 §1.4.2.6 tune-ok: the client may lower channel-max and frame-max; the negotiated
// values are the minimum of both sides, and 0 from amqp091-go means "take the server's value".
// The broker must then keep its own frames within the client's smaller frame-max.
func TestConnection_TuneNegotiatesMinimum(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                 string
		cfg                  amqp.Config
		wantChannel, wantFrm int
	}{
		{"client-lower", amqp.Config{ChannelMax: 100, FrameSize: 8192}, 100, 8192},
		{"client-zero", amqp.Config{ChannelMax: 0}, 2047, 131072},
		{"client-higher", amqp.Config{ChannelMax: 60000, FrameSize: 1 << 20}, 2047, 131072},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Dial = amqp.DefaultDial(5 * time.Second)
			c, err := amqp.DialConfig(brokerURL, tc.cfg)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if int(c.Config.ChannelMax) != tc.wantChannel || c.Config.FrameSize != tc.wantFrm {
				t.Fatalf("negotiated channel_max %d frame_max %d, want %d and %d",
					c.Config.ChannelMax, c.Config.FrameSize, tc.wantChannel, tc.wantFrm)
			}
			// A body three frames long must come back split to the negotiated frame size;
			// amqp091-go rejects a frame larger than it negotiated.
			ch, err := c.Channel()
			if err != nil {
				t.Fatalf("channel.open: %v", err)
			}
			q, err := ch.QueueDeclare("", false, true, true, false, nil)
			if err != nil {
				t.Fatalf("queue.declare: %v", err)
			}
			body := bytes.Repeat([]byte("0123456789abcdef"), 3*tc.wantFrm/16)
			if err := ch.PublishWithContext(ctx(t), "", q.Name, false, false,
				amqp.Publishing{Body: body}); err != nil {
				t.Fatalf("publish: %v", err)
			}
			m := publishGetOne(t, ch, q.Name)
			if !bytes.Equal(m.Body, body) {
				t.Fatalf("body of %d bytes came back as %d bytes", len(body), len(m.Body))
			}
		})
	}
}

// AMQP 0-9-1 §1.4.2.6 tune-ok: "the client MUST NOT ask for more than the server proposed"
// (channel-max, frame-max), and frame-max must be at least frame-min-size (4096). RabbitMQ also
// refuses 0 ("no limit") when it proposed a limit. It refuses such a tune-ok by closing the socket
// without connection.open-ok (RabbitMQ 3.10 closes silently after its handshake-failure delay;
// if a broker sends connection.close first, it must carry 530 NOT_ALLOWED).
func TestConnection_TuneOkBeyondServerLimitsIsRefused(t *testing.T) {
	t.Parallel()
	cases := map[string]func(s rawTune) rawTune{
		"frame-max-above":   func(s rawTune) rawTune { s.frameMax *= 2; return s },
		"frame-max-below":   func(s rawTune) rawTune { s.frameMax = 1024; return s },
		"frame-max-zero":    func(s rawTune) rawTune { s.frameMax = 0; return s },
		"channel-max-above": func(s rawTune) rawTune { s.channelMax = 3000; return s },
		"channel-max-zero":  func(s rawTune) rawTune { s.channelMax = 0; return s },
	}
	// RabbitMQ holds each refused handshake for seconds, so the cases run concurrently (t.Run
	// from several goroutines) rather than queueing for -parallel slots.
	var wg sync.WaitGroup
	defer wg.Wait()
	for name, tune := range cases {
		wg.Go(func() {
			t.Run(name, func(t *testing.T) {
				rc := rawConnect(t)
				rc.startHandshake()
				rc.sendStartOk(nil, "PLAIN", rawPlainGuest)
				ok := tune(rc.readTune())
				ok.heartbeat = 0
				rc.sendTuneOk(ok)
				rc.sendOpen("/")
				f, err := rc.readFrame()
				for err == nil && f.typ == rawFrameHeartbeat {
					f, err = rc.readFrame()
				}
				if err == nil {
					if c, m := f.classMethod(); c != 10 || m != 50 {
						t.Fatalf("tune-ok %+v accepted: got %v, want the connection refused", ok, f)
					}
					if cl := rawDecodeClose(t, f.payload[4:]); cl.code != 530 {
						t.Fatalf("connection.close %d %q, want 530", cl.code, cl.text)
					}
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("tune-ok %+v: connection neither opened nor closed within %v", ok, rawReadTimeout)
				}
			})
		})
	}
}

// AMQP 0-9-1 §4.2.7: with heartbeats negotiated the server sends heartbeat frames (type 8,
// channel 0, empty payload) when it has nothing else to send, and a client that keeps sending
// its own heartbeats stays connected past the timeout.
func TestConnection_HeartbeatSentByServerWhileIdle(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, func(s rawTune) rawTune { s.heartbeat = 1; return s })
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				rc.send(rawFrameHeartbeat, 0, nil)
			}
		}
	}()
	defer wg.Wait()
	defer close(done)

	start := time.Now()
	beats := 0
	for time.Since(start) < 3500*time.Millisecond {
		f, err := rc.readFrame()
		if err != nil {
			t.Fatalf("after %d heartbeats in %v: %v", beats, time.Since(start), err)
		}
		if f.typ != rawFrameHeartbeat || f.channel != 0 || len(f.payload) != 0 {
			t.Fatalf("unexpected %v from an idle connection", f)
		}
		beats++
	}
	if beats < 3 {
		t.Fatalf("%d heartbeats in %v with a 1s interval, want at least 3", beats, time.Since(start))
	}
}

// AMQP 0-9-1 §4.2.7: "If a peer detects no incoming traffic (i.e. received octets) for two
// heartbeat intervals or longer, it should close the connection without following the
// Connection.Close/Close-Ok handshaking". With heartbeat 1 s RabbitMQ drops a silent client
// after about 3 s.
func TestConnection_HeartbeatMissedClosesSocket(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, func(s rawTune) rawTune { s.heartbeat = 1; return s })
	start := time.Now()
	for {
		f, err := rc.readFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("silent client still connected after %v", time.Since(start))
			}
			break
		}
		if f.typ != rawFrameHeartbeat {
			t.Fatalf("got %v, want only heartbeats before the socket closes", f)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("silent client still connected after %v", time.Since(start))
		}
	}
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("socket closed after %v, before two heartbeat intervals", el)
	}
}

// AMQP 0-9-1 §1.4.2.9 connection.close / §1.4.2.10 close-ok: the server answers a client's close
// with close-ok, also while channels are open (they are closed implicitly).
func TestConnection_CloseGetsCloseOk(t *testing.T) {
	t.Parallel()
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		rc, _ := rawHandshake(t, nil)
		rc.openChannel(1)
		rc.openChannel(7)
		rc.sendMethod(0, 10, 50, rawArgs(nil).short(200).shortstr("bye").short(0).short(0))
		rc.expectMethod(0, 10, 51)
	})
	t.Run("amqp091", func(t *testing.T) {
		t.Parallel()
		c, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if _, err := c.Channel(); err != nil {
			t.Fatalf("channel.open: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("connection.close: %v", err)
		}
		if !c.IsClosed() {
			t.Fatal("connection not closed after close-ok")
		}
	})
}

// AMQP 0-9-1 §1.5.2.1 channel.open: opening a channel that is already open is a 504
// CHANNEL_ERROR connection exception naming channel.open (RabbitMQ: "second 'channel.open' seen").
func TestConnection_ChannelOpenTwiceIsChannelError(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.openChannel(1)
	rc.sendMethod(1, 20, 10, rawArgs(nil).shortstr(""))
	cl := rc.expectConnectionCloseCode(504)
	if cl.classID != 20 || cl.methodID != 10 {
		t.Errorf("close names method %d.%d, want 20.10", cl.classID, cl.methodID)
	}
}

// AMQP 0-9-1 §1.5.2.5 channel.close / close-ok: after a channel is closed its number can be
// opened again.
func TestConnection_ChannelIdReusableAfterClose(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.openChannel(1)
	rc.sendMethod(1, 20, 40, rawArgs(nil).short(200).shortstr("bye").short(0).short(0))
	rc.expectMethod(1, 20, 41)
	rc.openChannel(1)
}

// AMQP 0-9-1 §1.4.2.6 channel-max is the number of channels the client may use. RabbitMQ counts
// open channels: opening one more than the negotiated channel_max is a 530 NOT_ALLOWED
// connection exception.
func TestConnection_ChannelMaxLimitsOpenChannels(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, func(s rawTune) rawTune { s.channelMax = 2; s.heartbeat = 0; return s })
	rc.openChannel(1)
	rc.openChannel(2)
	rc.sendMethod(3, 20, 10, rawArgs(nil).shortstr(""))
	rc.expectConnectionCloseCode(530)
}

// RabbitMQ enforces channel_max as a count of open channels, not as a bound on channel numbers:
// with channel_max 10, channel 11 opens while fewer than 10 channels are open. Encoded because
// RabbitMQ is the oracle (the spec text suggests numbers, but clients never rely on a refusal).
func TestConnection_ChannelMaxCountsChannelsNotIds(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, func(s rawTune) rawTune { s.channelMax = 10; s.heartbeat = 0; return s })
	rc.openChannel(11)
	rc.openChannel(1000)
}

// AMQP 0-9-1 §4.2.3: connection-class methods belong on channel 0. RabbitMQ answers a
// connection method on another channel with 503 COMMAND_INVALID naming that method.
func TestConnection_ConnectionMethodOnChannelIsCommandInvalid(t *testing.T) {
	t.Parallel()
	rc, _ := rawHandshake(t, nil)
	rc.openChannel(1)
	rc.sendMethod(1, 10, 50, rawArgs(nil).short(200).shortstr("x").short(0).short(0))
	cl := rc.expectConnectionCloseCode(503)
	if cl.classID != 10 || cl.methodID != 50 {
		t.Errorf("close names method %d.%d, want 10.50", cl.classID, cl.methodID)
	}
}

// AMQP 0-9-1 §4.2.3: channel 0 is for connection methods only. RabbitMQ answers a channel-class
// method on channel 0 (and a connection.tune-ok after the connection is open) with 504
// CHANNEL_ERROR naming the method.
func TestConnection_NonConnectionMethodOnChannelZeroIsChannelError(t *testing.T) {
	t.Parallel()
	for name, m := range map[string]struct {
		class, method uint16
		args          rawArgs
	}{
		"basic.qos":    {60, 10, rawArgs(nil).long(0).short(1).octet(0)},
		"late-tune-ok": {10, 31, rawArgs(nil).short(2047).long(131072).short(0)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rc, _ := rawHandshake(t, nil)
			rc.sendMethod(0, m.class, m.method, m.args)
			cl := rc.expectConnectionCloseCode(504)
			if cl.classID != m.class || cl.methodID != m.method {
				t.Errorf("close names method %d.%d, want %d.%d", cl.classID, cl.methodID, m.class, m.method)
			}
		})
	}
}
