package main

import (
	"fmt"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dialTimeout bounds TCP connect plus the AMQP handshake.
const dialTimeout = 10 * time.Second

// closeTimeout bounds a graceful connection.close handshake.
const closeTimeout = 3 * time.Second

// Conn is an AMQP connection whose socket we keep hold of, so that any
// operation stuck on an unresponsive broker (an RPC waiting for its reply, a
// publish blocked by TCP back-pressure) can be unblocked by closing it.
type Conn struct {
	*amqp.Connection
	mu  sync.Mutex
	raw net.Conn
}

// dial opens a connection named name (shown in the broker's management UI).
func dial(url, name string) (*Conn, error) {
	c := &Conn{}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	cfg := amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			nc, err := amqp.DefaultDial(dialTimeout)(network, addr)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			c.raw = nc
			c.mu.Unlock()
			return nc, nil
		},
	}
	ac, err := amqp.DialConfig(url, cfg)
	if err != nil {
		c.kill()
		return nil, fmt.Errorf("dial %s: %w", redactURL(url), err)
	}
	c.Connection = ac
	return c, nil
}

// kill closes the socket without any AMQP handshake.
func (c *Conn) kill() {
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		_ = raw.Close()
	}
}

// closeBounded closes gracefully within closeTimeout, then forcibly.
func (c *Conn) closeBounded() {
	if c == nil || c.Connection == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_ = c.CloseDeadline(time.Now().Add(closeTimeout))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout + time.Second):
		c.kill()
	}
}

// closeAll closes many connections concurrently, bounded in time.
func closeAll(conns []*Conn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(c *Conn) {
			defer func() { <-sem; wg.Done() }()
			c.closeBounded()
		}(c)
	}
	waitTimeout(&wg, closeTimeout+2*time.Second)
	for _, c := range conns {
		if c != nil {
			c.kill()
		}
	}
}

// waitTimeout waits for wg up to d; it reports whether wg finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// withTimeout runs f and returns its error, or a timeout error after d (f
// keeps running in the background; callers kill the connection it uses).
func withTimeout(d time.Duration, what string, f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		return fmt.Errorf("%s: timed out after %s", what, d)
	}
}

// redactURL hides the password of an AMQP URL for messages.
func redactURL(u string) string {
	uri, err := amqp.ParseURI(u)
	if err != nil {
		return "<invalid url>"
	}
	if uri.Password != "" {
		uri.Password = "xxx"
	}
	return uri.String()
}
