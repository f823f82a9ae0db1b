package queue

import (
	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// Config is a queue's effective behaviour from its arguments (and, later, policies): TTLs,
// length limits, dead-lettering, priorities, single active consumer, delivery limit.
type Config struct {
	MessageTTL     int64  // ms; -1: none (x-message-ttl)
	Expires        int64  // ms; 0: never (x-expires)
	MaxLength      int64  // messages; -1: none (x-max-length)
	MaxLengthBytes int64  // body bytes; -1: none (x-max-length-bytes)
	Overflow       string // drop-head (default), reject-publish, reject-publish-dlx (x-overflow)
	DLX            string // x-dead-letter-exchange
	HasDLX         bool
	DLRK           string // x-dead-letter-routing-key
	HasDLRK        bool
	MaxPriority    int    // 0: not a priority queue (x-max-priority)
	SingleActive   bool   // x-single-active-consumer
	DeliveryLimit  int64  // -1: none (x-delivery-limit)
	Quorum         bool   // x-queue-type quorum: deliveries carry x-delivery-count
	Dedup          bool   // x-message-deduplication
	DedupSize      int64  // x-cache-size: keys kept (0: no size bound)
	DedupTTL       int64  // x-cache-ttl: ms a key is kept (0: no age bound)
	DedupHeader    string // x-deduplication-header ("": the message-id property)
}

// Overflow behaviours.
const (
	DropHead         = "drop-head"
	RejectPublish    = "reject-publish"
	RejectPublishDLX = "reject-publish-dlx"
)

func argInt(v any) (int64, bool) { return amqp.IntValue(v) }

// ParseConfig reads the arguments RabbitMQ understands (already validated by the vhost).
func ParseConfig(args amqp.Table) Config {
	c := Config{MessageTTL: -1, MaxLength: -1, MaxLengthBytes: -1, Overflow: DropHead, DeliveryLimit: -1}
	// A policy may ask for more than RabbitMQ's ten years (arguments may not): hold it there,
	// so that deadlines never overflow.
	if n, ok := argInt(args["x-message-ttl"]); ok {
		c.MessageTTL = min(n, message.MaxTTL)
	}
	if n, ok := argInt(args["x-expires"]); ok {
		c.Expires = min(n, message.MaxTTL)
	}
	if n, ok := argInt(args["x-max-length"]); ok {
		c.MaxLength = n
	}
	if n, ok := argInt(args["x-max-length-bytes"]); ok {
		c.MaxLengthBytes = n
	}
	if s, ok := args["x-overflow"].(string); ok {
		c.Overflow = s
	}
	if s, ok := args["x-dead-letter-exchange"].(string); ok {
		c.DLX, c.HasDLX = s, true
	}
	if s, ok := args["x-dead-letter-routing-key"].(string); ok {
		c.DLRK, c.HasDLRK = s, true
	}
	if n, ok := argInt(args["x-max-priority"]); ok && n > 0 {
		c.MaxPriority = int(min(n, 255))
	}
	if b, ok := args["x-single-active-consumer"].(bool); ok {
		c.SingleActive = b
	}
	if n, ok := argInt(args["x-delivery-limit"]); ok {
		c.DeliveryLimit = n
	}
	c.Quorum = args["x-queue-type"] == "quorum"
	if b, ok := args["x-message-deduplication"].(bool); ok {
		c.Dedup = b
	}
	if n, ok := argInt(args["x-cache-size"]); ok {
		c.DedupSize = n
	}
	if n, ok := argInt(args["x-cache-ttl"]); ok {
		c.DedupTTL = n
	}
	if s, ok := args["x-deduplication-header"].(string); ok {
		c.DedupHeader = s
	}
	return c
}

// Config returns the queue's effective configuration.
func (q *Queue) Config() Config {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg
}

// Configure replaces the queue's effective configuration (e.g. when a policy changes). The
// priority levels are fixed at creation, as in RabbitMQ.
func (q *Queue) Configure(c Config) {
	q.mu.Lock()
	c.MaxPriority = q.cfg.MaxPriority
	q.cfg = c
	q.enforceLimitsLocked()
	q.expireLocked()
	q.scheduleExpiryLocked()
	q.touchLocked()
	q.dispatchLocked()
	q.unlock()
}
