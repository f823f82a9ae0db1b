package queue

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/warrenmq/warren/amqp"
)

// RabbitMQ 3.10's rules for declaring and consuming from stream queues, in its order and with
// its texts (checked against a 3.10.8 node; conformance/stream_test.go).

// StreamType is the x-queue-type of a stream queue.
const StreamType = "stream"

// DefaultStreamSegmentBytes is RabbitMQ's default x-stream-max-segment-size-bytes (500 MB).
// Retention drops whole segments, so a stream keeps at least its current segment whatever
// x-max-length-bytes says.
const DefaultStreamSegmentBytes = 500_000_000

// isStreamArgs reports whether declare arguments ask for a stream queue.
func isStreamArgs(args amqp.Table) bool {
	s, _ := args["x-queue-type"].(string)
	return s == StreamType
}

// streamOnlyArgs are the arguments classic and quorum queues refuse.
var streamOnlyArgs = []string{"x-max-age", "x-stream-max-segment-size-bytes"}

// streamRefusedArgs are RabbitMQ's declare arguments that a stream refuses, in the order of
// rabbit_amqqueue:declare_args/0. Arguments RabbitMQ does not know are accepted and ignored.
var streamRefusedArgs = []string{
	"x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
	"x-dead-letter-strategy", "x-max-length", "x-max-in-memory-length", "x-max-in-memory-bytes",
	"x-max-priority", "x-overflow", "x-queue-mode", "x-queue-version", "x-single-active-consumer",
	"x-quorum-initial-group-size", "x-delivery-limit", "x-queue-master-locator",
}

// streamRefusedConsumerArgs are RabbitMQ's consumer arguments that a stream refuses.
var streamRefusedConsumerArgs = []string{"x-priority", "x-cancel-on-ha-failover"}

// internalError is what RabbitMQ 3.10 answers where its argument parsing crashes (an age or
// x-stream-offset string without leading digits, an x-stream-offset of an unexpected type):
// 541 INTERNAL_ERROR with no text, closing the connection. Clients see the same here.
func internalError() error {
	return &amqp.Error{Code: amqp.InternalError, Text: "INTERNAL_ERROR", Scope: amqp.ScopeConnection}
}

// CheckTypeDeclare applies the queue-type rules of a (non-passive) queue.declare that come
// before the generic argument checks, as RabbitMQ orders them. For a stream: no server-named
// queue; valid values for the stream's own arguments; no argument of another queue type (406
// "... of queue type rabbit_stream_queue"); then durable, not exclusive, not auto-delete (406
// "invalid property ..."). For a classic or quorum queue: no stream-only argument.
func CheckTypeDeclare(name, vhost string, serverNamed, durable, exclusive, autoDelete bool, args amqp.Table) error {
	if !isStreamArgs(args) {
		qtype := "rabbit_classic_queue"
		if args["x-queue-type"] == "quorum" {
			qtype = "rabbit_quorum_queue"
		} else if t, ok := args["x-queue-type"]; ok && t != "classic" {
			return nil // unknown type: the generic checks refuse it
		}
		// Each type refuses the other's locator argument (RabbitMQ 3.10: classic queues take
		// x-queue-master-locator, quorum queues x-queue-leader-locator), ahead of the rest.
		other := "x-queue-leader-locator"
		if qtype == "rabbit_quorum_queue" {
			other = "x-queue-master-locator"
		}
		for _, k := range append([]string{other}, streamOnlyArgs...) {
			if _, ok := args[k]; ok {
				return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s' of queue type %s", k, name, vhost, qtype)
			}
		}
		if v, ok := args["x-queue-master-locator"]; ok {
			if _, ok := MasterLocator(v); !ok {
				return internalError() // RabbitMQ 3.10 crashes on an unknown strategy
			}
		}
		if v, ok := args["x-queue-leader-locator"]; ok {
			return checkLeaderLocator(v, name, vhost)
		}
		return nil
	}
	if serverNamed {
		return amqp.ChannelErr(amqp.PreconditionFailed, "Cannot declare a server-named queue for type rabbit_stream_queue")
	}
	bad := func(arg, reason string) error {
		return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s': %s", arg, name, vhost, reason)
	}
	// Values, in declare_args order.
	for _, k := range []string{"x-max-length-bytes", "x-max-age", "x-stream-max-segment-size-bytes", "x-initial-cluster-size", "x-queue-leader-locator"} {
		v, ok := args[k]
		if !ok {
			continue
		}
		switch k {
		case "x-max-length-bytes", "x-stream-max-segment-size-bytes", "x-initial-cluster-size":
			n, ok := argInt(v)
			switch {
			case !ok:
				return bad(k, fmt.Sprintf("\"expected integer, got %s\"", amqp.TypeName(v)))
			case n < 0:
				return bad(k, fmt.Sprintf("{value_negative,%d}", n))
			case n == 0 && k == "x-initial-cluster-size":
				return bad(k, "{value_zero,0}")
			}
		case "x-max-age":
			s, ok := v.(string)
			if !ok {
				return bad(k, fmt.Sprintf("{unacceptable_type,%s}", amqp.TypeName(v)))
			}
			if _, err := parseAge(s); err == errAgeCrash {
				return internalError()
			} else if err != nil {
				return bad(k, "invalid_max_age")
			}
		case "x-queue-leader-locator":
			if err := checkLeaderLocator(v, name, vhost); err != nil {
				return err
			}
		}
	}
	for _, k := range streamRefusedArgs {
		if _, ok := args[k]; ok {
			return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_stream_queue", k, name, vhost)
		}
	}
	prop := ""
	switch {
	case autoDelete:
		prop = "auto-delete"
	case exclusive:
		prop = "exclusive-owner"
	case !durable:
		prop = "non-durable"
	}
	if prop != "" {
		return amqp.ChannelErr(amqp.PreconditionFailed, "invalid property '%s' for queue '%s' in vhost '%s'", prop, name, vhost)
	}
	return nil
}

var (
	errAgeInvalid = fmt.Errorf("queue: invalid age")
	errAgeCrash   = fmt.Errorf("queue: age without digits")
)

// parseAge parses RabbitMQ's age format (x-max-age, and x-stream-offset intervals): a positive
// integer and one unit of Y (365 days), M (30 days), D, h, m or s, e.g. "7D", "1h", "30s".
// errAgeCrash marks a string without leading digits, where RabbitMQ 3.10 fails internally;
// errAgeInvalid anything else it refuses (no unit, another unit, zero, a fraction).
func parseAge(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errAgeCrash
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		n = math.MaxInt64 // RabbitMQ has big integers; saturate
	}
	if n == 0 {
		return 0, errAgeInvalid
	}
	var unit time.Duration
	switch s[i:] {
	case "Y":
		unit = 365 * 24 * time.Hour
	case "M":
		unit = 30 * 24 * time.Hour
	case "D":
		unit = 24 * time.Hour
	case "h":
		unit = time.Hour
	case "m":
		unit = time.Minute
	case "s":
		unit = time.Second
	default:
		return 0, errAgeInvalid
	}
	if n > int64(math.MaxInt64/unit) {
		return math.MaxInt64, nil
	}
	return time.Duration(n) * unit, nil
}

// startKind is where a stream consumer starts (x-stream-offset).
type startKind uint8

const (
	startNext   startKind = iota // only messages published from now on (the default)
	startFirst                   // the first message the stream holds
	startLast                    // the last message (RabbitMQ: the start of the last chunk)
	startOffset                  // an offset: at it, or the first one held if it is older
	startTime                    // the first message stored at or after a time (unix ms)
	startAge                     // messages newer than an interval (ms) before the consume
)

type streamStart struct {
	kind startKind
	n    int64 // offset, unix ms or ms, by kind
}

// parseStreamOffset reads the x-stream-offset consumer argument: "first", "last", "next", an
// integer offset, a timestamp, or an interval in the x-max-age format ("1h": newer than an
// hour). The errors are RabbitMQ's: 406 for a string it cannot use, 541 where it crashes.
func (q *Queue) parseStreamOffset(v any, ok bool) (streamStart, error) {
	if !ok {
		return streamStart{kind: startNext}, nil
	}
	switch v := v.(type) {
	case string:
		switch v {
		case "first":
			return streamStart{kind: startFirst}, nil
		case "last":
			return streamStart{kind: startLast}, nil
		case "next":
			return streamStart{kind: startNext}, nil
		}
		d, err := parseAge(v)
		if err == errAgeCrash {
			return streamStart{}, internalError()
		}
		if err != nil {
			return streamStart{}, amqp.ChannelErr(amqp.PreconditionFailed,
				"invalid arg 'x-stream-offset' for queue '%s' in vhost '%s': {invalid_stream_offset_arg,{longstr,<<\"%s\">>}}", q.Name, q.VHost, v)
		}
		return streamStart{kind: startAge, n: d.Milliseconds()}, nil
	case time.Time:
		return streamStart{kind: startTime, n: v.UnixMilli()}, nil
	}
	if n, ok := argInt(v); ok {
		return streamStart{kind: startOffset, n: n}, nil
	}
	return streamStart{}, internalError()
}

// StreamConsume is a basic.consume on a stream queue, with what the channel knows of it.
type StreamConsume struct {
	Args      amqp.Table // the consumer arguments (x-stream-offset)
	Prefetch  uint32     // the channel's per-consumer prefetch count (basic.qos, global=false); 0: none
	GlobalQos bool       // the channel has a channel-wide prefetch limit (basic.qos, global=true)
	NoAck     bool
}

// checkStreamConsume applies RabbitMQ's rules for a stream consumer, in its order: a usable
// x-stream-offset; no x-priority (streams have no consumer priorities); a prefetch count (406);
// manual acknowledgement (540); no channel-wide prefetch (540).
func (q *Queue) checkStreamConsume(sc StreamConsume) (streamStart, error) {
	v, ok := sc.Args["x-stream-offset"]
	start, err := q.parseStreamOffset(v, ok)
	if err != nil {
		return streamStart{}, err
	}
	for _, k := range streamRefusedConsumerArgs {
		if _, ok := sc.Args[k]; ok {
			return streamStart{}, amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_stream_queue", k, q.Name, q.VHost)
		}
	}
	switch {
	case sc.Prefetch == 0:
		return streamStart{}, amqp.ChannelErr(amqp.PreconditionFailed, "consumer prefetch count is not set for 'queue '%s' in vhost '%s''", q.Name, q.VHost)
	case sc.NoAck:
		return streamStart{}, amqp.ChannelErr(amqp.NotImplemented, "automatic acknowledgement not supported by stream queues queue '%s' in vhost '%s'", q.Name, q.VHost)
	case sc.GlobalQos:
		return streamStart{}, amqp.ChannelErr(amqp.NotImplemented, "queue '%s' in vhost '%s' does not support global qos", q.Name, q.VHost)
	}
	return start, nil
}

// StreamUnsupported returns RabbitMQ's answer to an operation streams do not have ("basic.get",
// "queue.purge", "basic.nack and basic.reject"): 540 NOT_IMPLEMENTED, closing the connection.
func (q *Queue) StreamUnsupported(op string) error {
	return amqp.ChannelErr(amqp.NotImplemented, "%s not supported by stream queues queue '%s' in vhost '%s'", op, q.Name, q.VHost)
}

// checkLeaderLocator checks an x-queue-leader-locator value (quorum queues and streams).
func checkLeaderLocator(v any, name, vhost string) error {
	bad := func(reason string) error {
		return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg 'x-queue-leader-locator' for queue '%s' in vhost '%s': %s", name, vhost, reason)
	}
	s, ok := v.(string)
	if !ok {
		return bad(fmt.Sprintf("{unacceptable_type,%s}", amqp.TypeName(v)))
	}
	switch s {
	case "client-local", "balanced", "random", "least-leaders":
		return nil
	}
	return bad("invalid_queue_locator_arg")
}

// MasterLocator reads a classic queue's x-queue-master-locator (or the policy key
// queue-master-locator): "client-local", "min-masters" or "random", RabbitMQ 3.10's strategies
// for where a new classic queue lives. ok is false for anything else.
func MasterLocator(v any) (string, bool) {
	s, _ := v.(string)
	switch s {
	case "client-local", "min-masters", "random":
		return s, true
	}
	return "", false
}
