package broker

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/queue"
)

// MaxMessageSizeLimit is the largest MaxMessageSize accepted: 512 MiB, RabbitMQ's bound on
// max_message_size.
const MaxMessageSizeLimit = 512 << 20

// DefaultConfig returns the configuration of a default single node, the one place Warren's
// defaults are written down: cmd/warren's flags start from it and SetDefaults fills a Config's
// zero fields from it. Log and Storage stay zero (silent, in memory). MemoryBudget is a
// quarter of the machine's physical memory.
func DefaultConfig() Config {
	return Config{
		AMQPListen:          "127.0.0.1:5672",
		AMQPSListen:         "127.0.0.1:5671",
		DataDir:             "data",
		FrameMax:            131072,
		ChannelMax:          2047,
		Heartbeat:           60,
		MaxMessageSize:      128 << 20,
		MemoryBudget:        physicalMemory() / 4,
		MaxQueueMemory:      queue.DefaultMaxQueueBytes,
		MemoryHighWatermark: 0.4,
		DiskFreeLimit:       50_000_000,
		HandshakeTimeout:    10 * time.Second,
		SendTimeout:         30 * time.Second,
		DefaultUser:         "guest",
		DefaultPass:         "guest",
		LoopbackUsers:       []string{"guest"},
		CertLoginFrom:       "distinguished_name",
	}
}

// SetDefaults fills the zero fields of c from DefaultConfig (Heartbeat only without
// NoHeartbeat; DefaultPass only with DefaultUser).
func (c *Config) SetDefaults() {
	d := DefaultConfig()
	setZero(&c.AMQPListen, d.AMQPListen)
	setZero(&c.AMQPSListen, d.AMQPSListen)
	setZero(&c.DataDir, d.DataDir)
	setZero(&c.FrameMax, d.FrameMax)
	setZero(&c.ChannelMax, d.ChannelMax)
	if !c.NoHeartbeat {
		setZero(&c.Heartbeat, d.Heartbeat)
	}
	setZero(&c.MaxMessageSize, d.MaxMessageSize)
	setZero(&c.MemoryBudget, d.MemoryBudget)
	setZero(&c.MaxQueueMemory, d.MaxQueueMemory)
	setZero(&c.MemoryHighWatermark, d.MemoryHighWatermark)
	setZero(&c.DiskFreeLimit, d.DiskFreeLimit)
	setZero(&c.HandshakeTimeout, d.HandshakeTimeout)
	setZero(&c.SendTimeout, d.SendTimeout)
	if c.DefaultUser == "" {
		c.DefaultUser, c.DefaultPass = d.DefaultUser, d.DefaultPass
	}
	if c.LoopbackUsers == nil {
		c.LoopbackUsers = d.LoopbackUsers
	}
	setZero(&c.CertLoginFrom, d.CertLoginFrom)
}

func setZero[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Validate reports every setting of c that is out of range, named as cmd/warren's flags name
// them, joined into one error (nil when all are fine). Zero values are fine: they mean the
// default (call it after SetDefaults to check the values in effect).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.FrameMax != 0 && c.FrameMax < amqp.FrameMinSize {
		bad("frame-max %d: below %d, the smallest frame_max AMQP allows", c.FrameMax, amqp.FrameMinSize)
	}
	if c.MaxMessageSize < 0 || c.MaxMessageSize > MaxMessageSizeLimit {
		bad("max-message-size %d: want 1 to %d bytes (512 MiB, RabbitMQ's bound)", c.MaxMessageSize, MaxMessageSizeLimit)
	}
	if c.MemoryBudget < 0 {
		bad("memory-budget %d: negative", c.MemoryBudget)
	}
	if c.MaxQueueMemory < 0 {
		bad("max-queue-memory %d: negative", c.MaxQueueMemory)
	}
	if math.IsNaN(c.MemoryHighWatermark) || math.IsInf(c.MemoryHighWatermark, 0) {
		bad("vm-memory-high-watermark %v: want a fraction of physical memory", c.MemoryHighWatermark)
	}
	if c.HandshakeTimeout < 0 {
		bad("handshake-timeout %s: negative", c.HandshakeTimeout)
	}
	if c.MaxConnections < 0 {
		bad("max-connections %d: negative", c.MaxConnections)
	}
	if c.QueueMasterLocator != "" {
		if _, ok := queue.MasterLocator(c.QueueMasterLocator); !ok {
			bad("queue-master-locator %q: want client-local, min-masters or random", c.QueueMasterLocator)
		}
	}
	switch c.CertLoginFrom {
	case "", "distinguished_name", "common_name":
	default:
		bad("ssl-cert-login-from %q: want distinguished_name or common_name", c.CertLoginFrom)
	}
	return errors.Join(errs...)
}
