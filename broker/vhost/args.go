package vhost

import (
	"fmt"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/message"
)

// queueArgKinds are the queue arguments RabbitMQ validates (and compares on redeclare).
var queueArgKinds = map[string]string{
	"x-message-ttl":             "nonneg",
	"x-expires":                 "positive",
	"x-max-length":              "nonneg",
	"x-max-length-bytes":        "nonneg",
	"x-max-priority":            "priority",
	"x-delivery-limit":          "nonneg",
	"x-dead-letter-exchange":    "string",
	"x-dead-letter-routing-key": "string",
	"x-overflow":                "overflow",
	"x-queue-mode":              "mode",
	"x-queue-type":              "type",
	"x-single-active-consumer":  "bool",
	"x-max-age":                 "string",
	"x-message-deduplication":   "bool",
	"x-cache-size":              "nonneg",
	"x-cache-ttl":               "nonneg",
	"x-deduplication-header":    "string",
	"x-warren-replication":      "replication", // quorum queues: sync (default) or async

	"x-stream-max-segment-size-bytes": "nonneg", // streams; queue.CheckTypeDeclare checks stream arguments first
}

func intArg(v any) (int64, bool) { return amqp.IntValue(v) }

// ValidateQueueArgs checks the types and ranges of the queue arguments RabbitMQ checks, with
// its error texts (406 PRECONDITION_FAILED).
func ValidateQueueArgs(args amqp.Table) error { return validateQueueArgs(args, false) }

// validateQueueArgs checks queue arguments, or (policy) a policy's keys turned into them:
// RabbitMQ 3.10 checks a policy's message-ttl and expires without the ten-year limit of the
// arguments (the queue holds them at the limit: queue.ParseConfig).
func validateQueueArgs(args amqp.Table, policy bool) error {
	if _, ok := args["x-dead-letter-routing-key"]; ok {
		if _, ok := args["x-dead-letter-exchange"]; !ok {
			return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg 'x-dead-letter-routing-key' for queue: Key x-dead-letter-exchange should also be set")
		}
	}
	for k, v := range args {
		kind, ok := queueArgKinds[k]
		if !ok {
			continue
		}
		bad := func(reason string) error {
			return amqp.ChannelErr(amqp.PreconditionFailed, "invalid arg '%s' for queue: %s", k, reason)
		}
		switch kind {
		case "nonneg", "positive", "priority":
			n, ok := intArg(v)
			if !ok {
				return bad(fmt.Sprintf("\"expected integer, got %s\"", amqp.TypeName(v)))
			}
			if n < 0 || (kind == "positive" && n == 0) {
				if kind == "positive" && n == 0 {
					return bad(fmt.Sprintf("{value_zero,%d}", n))
				}
				return bad(fmt.Sprintf("{value_negative,%d}", n))
			}
			if kind == "priority" && n > 255 {
				return bad(fmt.Sprintf("{max_value_exceeded,%d}", n))
			}
			if (k == "x-message-ttl" || k == "x-expires") && n > message.MaxTTL && !policy {
				return bad(fmt.Sprintf("{value_too_large,%d}", n))
			}
		case "string":
			if _, ok := v.(string); !ok {
				if k == "x-dead-letter-exchange" { // RabbitMQ words this one differently
					return amqp.ChannelErr(amqp.PreconditionFailed, "invalid type '%s' for arg '%s' in queue:", amqp.TypeName(v), k)
				}
				return bad(fmt.Sprintf("{unacceptable_type,%s}", amqp.TypeName(v)))
			}
		case "bool":
			if _, ok := v.(bool); !ok {
				return bad(fmt.Sprintf("{unacceptable_type,%s}", amqp.TypeName(v)))
			}
		case "overflow", "mode", "type", "replication":
			s, ok := v.(string)
			if !ok {
				return bad(fmt.Sprintf("{unacceptable_type,%s}", amqp.TypeName(v)))
			}
			switch {
			case kind == "overflow" && s != "drop-head" && s != "reject-publish" && s != "reject-publish-dlx":
				return bad("invalid_overflow")
			case kind == "replication" && s != "sync" && s != "async":
				return bad(fmt.Sprintf("\"unsupported replication mode '%s' (sync, async)\"", s))
			case kind == "mode" && s != "default" && s != "lazy":
				return bad(fmt.Sprintf("\"unsupported queue mode '%s'\"", s))
			case kind == "type" && s != "classic" && s != "quorum" && s != "stream":
				// Quorum queues are accepted as durable classic queues with quorum semantics
				// for x-delivery-limit (no Raft yet; replication is the cluster's job).
				return bad(fmt.Sprintf("\"unsupported queue type '%s'\"", s))
			}
		}
	}
	return nil
}

// argDefaults are values equivalent to an absent argument on redeclare.
var argDefaults = map[string]any{"x-queue-type": "classic", "x-queue-mode": "default"}

// equivalentArgs compares the validated arguments of an existing queue and a redeclaration.
func equivalentArgs(queueName, vhost string, cur, got amqp.Table) error {
	for k := range queueArgKinds {
		c, hasC := cur[k]
		g, hasG := got[k]
		if def, ok := argDefaults[k]; ok {
			if !hasC {
				c, hasC = def, true
			}
			if !hasG {
				g, hasG = def, true
			}
		}
		if !hasC && !hasG {
			continue
		}
		same := hasC == hasG
		if same {
			ci, cok := intArg(c)
			gi, gok := intArg(g)
			if cok && gok {
				same = ci == gi
			} else {
				same = fmt.Sprint(c) == fmt.Sprint(g) && amqp.TypeName(c) == amqp.TypeName(g)
			}
		}
		if !same {
			return amqp.ChannelErr(amqp.PreconditionFailed, "inequivalent arg '%s' for queue '%s' in vhost '%s': received %s but current is %s", k, queueName, vhost, argText(g, hasG), argText(c, hasC))
		}
	}
	return nil
}

// argText describes an argument's value in an inequivalent-arg error, as RabbitMQ does.
func argText(v any, present bool) string {
	if !present {
		return "none"
	}
	return fmt.Sprintf("the value '%v' of type '%s'", v, amqp.TypeName(v))
}
