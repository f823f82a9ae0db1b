package meta

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/warrenmq/warren/amqp"
)

// Kind names a kind of entity.
type Kind string

// Kinds of records and the fields each carries besides Kind, VHost and Name (field names are
// short: they are stored once per record).
const (
	// KindInit marks a store that holds the node's first metadata (defaults or an import of
	// an older version's files); a store without it is seeded at start. No fields.
	KindInit Kind = "init"
	// KindVHost: Name is the vhost. No fields.
	KindVHost Kind = "vhost"
	// KindUser: Name is the user; "h" password hash (bytes: salt + digest, empty for none),
	// "ha" hashing algorithm, "t" tags (array of strings).
	KindUser Kind = "user"
	// KindUserLimits: Name is the user; "mc" max-connections, "mch" max-channels (integers,
	// negative: no limit).
	KindUserLimits Kind = "user-limits"
	// KindPermission: VHost, Name is the user; "c", "w", "r" the configure, write and read
	// expressions.
	KindPermission Kind = "perm"
	// KindTopicPermission: VHost, Name is the user; "x" exchange, "w", "r" expressions.
	KindTopicPermission Kind = "topic-perm"
	// KindParameter is a runtime parameter: VHost, Name; "c" component, "val" value (a table).
	// Component "vhost-limits" (name "limits") holds the vhost's limits.
	KindParameter Kind = "param"
	// KindPolicy: VHost, Name; "p" pattern, "at" apply-to, "pr" priority, "d" definition.
	KindPolicy Kind = "policy"
	// KindExchange: VHost, Name; "t" type, "du" durable (absent: true), "ad" auto-delete,
	// "i" internal, "a" arguments. A delete may carry "iu" (if-unused).
	KindExchange Kind = "exchange"
	// KindQueue: VHost, Name; "du" durable (absent: true), "ex" exclusive, "ad" auto-delete,
	// "a" arguments.
	KindQueue Kind = "queue"
	// KindBinding: VHost; "s" source exchange, "d" destination, "de" destination is an
	// exchange, "rk" routing key, "a" arguments. No Name.
	KindBinding Kind = "binding"
	// KindNodeBoot says that a cluster node (Name) started: what lived only in its memory
	// (exclusive and non-durable queues homed there, with their bindings) is gone. Written by a
	// ReplicatedStore only; never live in a LogStore. No fields.
	KindNodeBoot Kind = "node-boot"
	// KindPlacement moves a replicated queue's leader: VHost, Name is the queue; "ld" the new
	// leader, "ep" the new epoch, "pe" the epoch it replaces (applied only if that is still
	// the queue's). The queue record holds the first placement ("rep", "ld", "ep", "as").
	KindPlacement Kind = "placement"
)

// rank orders replay: what others refer to comes first. Within a rank, records keep their
// order in the log.
var rank = map[Kind]int{
	KindInit: 0, KindVHost: 1, KindUser: 2, KindUserLimits: 3, KindPermission: 4,
	KindTopicPermission: 5, KindParameter: 6, KindPolicy: 7, KindExchange: 8, KindQueue: 9,
	KindBinding: 10, KindPlacement: 11,
}

// Rank returns the replay rank of k (unknown kinds last).
func Rank(k Kind) int {
	if r, ok := rank[k]; ok {
		return r
	}
	return len(rank)
}

// Record is one metadata change: it puts (creates or replaces) or, with Delete, removes the
// entity named by Key. Fields hold the kind's own attributes (see the Kind constants).
type Record struct {
	Kind   Kind
	Delete bool
	VHost  string
	Name   string
	Fields amqp.Table

	// Transient records are applied without being written (the entity does not survive a
	// restart): non-durable or exclusive queues, non-durable exchanges, bindings with a
	// transient end. A replicated store may still replicate them.
	Transient bool
	// Node is the cluster node that proposed the record (set by a ReplicatedStore; empty on a
	// single node): a queue's home.
	Node string
	// Owner is the connection owning an exclusive queue, and Object the very entity a delete
	// is about (a queue that must still be the one registered under its name). Both live in
	// this process only: they are never encoded.
	Owner, Object any
}

// Errors of the store.
var (
	// ErrUnknownKind is returned by an Applier for a record of a kind it does not know (a
	// newer version's): such records are kept, never retired.
	ErrUnknownKind = errors.New("meta: unknown record kind")
	// ErrBadRecord means a stored record could not be decoded.
	ErrBadRecord = errors.New("meta: bad record")
)

// Str returns the string field f ("" when absent).
func (r *Record) Str(f string) string { s, _ := r.Fields[f].(string); return s }

// Bool returns the boolean field f (false when absent).
func (r *Record) Bool(f string) bool { b, _ := r.Fields[f].(bool); return b }

// BoolOr returns the boolean field f, or def when it is absent.
func (r *Record) BoolOr(f string, def bool) bool {
	if b, ok := r.Fields[f].(bool); ok {
		return b
	}
	return def
}

// Int returns the integer field f, or def when it is absent.
func (r *Record) Int(f string, def int64) int64 {
	if n, ok := amqp.IntValue(r.Fields[f]); ok {
		return n
	}
	return def
}

// Table returns the table field f (nil when absent or empty).
func (r *Record) Table(f string) amqp.Table {
	t, _ := r.Fields[f].(amqp.Table)
	if len(t) == 0 {
		return nil
	}
	return t
}

// Key identifies the entity a record is about: two records with the same key are about the
// same entity (the later replaces the earlier).
func (r *Record) Key() string {
	switch r.Kind {
	case KindInit:
		return string(KindInit)
	case KindVHost:
		return VHostKey(r.Name)
	case KindUser:
		return UserKey(r.Name)
	case KindUserLimits:
		return UserLimitsKey(r.Name)
	case KindPermission:
		return PermissionKey(r.VHost, r.Name)
	case KindTopicPermission:
		return TopicPermissionKey(r.VHost, r.Name, r.Str("x"))
	case KindParameter:
		return ParameterKey(r.VHost, r.Str("c"), r.Name)
	case KindPolicy:
		return PolicyKey(r.VHost, r.Name)
	case KindExchange:
		return ExchangeKey(r.VHost, r.Name)
	case KindQueue:
		return QueueKey(r.VHost, r.Name)
	case KindPlacement:
		return PlacementKey(r.VHost, r.Name)
	case KindBinding:
		return BindingKey(r.VHost, r.Str("s"), r.Str("d"), r.Bool("de"), r.Str("rk"), r.Table("a"))
	}
	return key(string(r.Kind), r.VHost, r.Name)
}

// key joins parts unambiguously (names may contain any byte).
func key(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// VHostKey is the key of a vhost.
func VHostKey(vh string) string { return key(string(KindVHost), vh) }

// UserKey is the key of a user.
func UserKey(user string) string { return key(string(KindUser), user) }

// UserLimitsKey is the key of a user's limits.
func UserLimitsKey(user string) string { return key(string(KindUserLimits), user) }

// PermissionKey is the key of a user's permissions in a vhost.
func PermissionKey(vh, user string) string { return key(string(KindPermission), vh, user) }

// TopicPermissionKey is the key of a user's topic permission on an exchange of a vhost.
func TopicPermissionKey(vh, user, x string) string {
	return key(string(KindTopicPermission), vh, user, x)
}

// ParameterKey is the key of a runtime parameter.
func ParameterKey(vh, component, name string) string {
	return key(string(KindParameter), vh, component, name)
}

// PolicyKey is the key of a policy.
func PolicyKey(vh, name string) string { return key(string(KindPolicy), vh, name) }

// ExchangeKey is the key of an exchange.
func ExchangeKey(vh, name string) string { return key(string(KindExchange), vh, name) }

// PlacementKey is the key of a replicated queue's latest leader change.
func PlacementKey(vh, name string) string { return key(string(KindPlacement), vh, name) }

// QueueKey is the key of a queue.
func QueueKey(vh, name string) string { return key(string(KindQueue), vh, name) }

// BindingKey is the key of a binding: its source, destination, routing key and arguments.
func BindingKey(vh, src, dest string, destIsExchange bool, rk string, args amqp.Table) string {
	de := "q"
	if destIsExchange {
		de = "e"
	}
	var a string
	if len(args) > 0 {
		a = string(amqp.AppendTable(nil, args))
	}
	return key(string(KindBinding), vh, src, de, dest, rk, a)
}

// reserved are the table keys of the envelope; kinds' fields use others.
var reserved = [...]string{"k", "v", "n", "del", "nd"}

// Encode returns the record's stored form (an AMQP field table; Transient, Owner and Object
// are not part of it).
func (r *Record) Encode() []byte {
	t := make(amqp.Table, len(r.Fields)+4)
	for k, v := range r.Fields {
		t[k] = v
	}
	t["k"] = string(r.Kind)
	if r.VHost != "" {
		t["v"] = r.VHost
	}
	if r.Name != "" {
		t["n"] = r.Name
	}
	if r.Delete {
		t["del"] = true
	}
	if r.Node != "" {
		t["nd"] = r.Node
	}
	return amqp.AppendTable(nil, t)
}

// Decode reads a record written by Encode (or a definition record of an earlier version,
// which has the same shape).
func Decode(b []byte) (Record, error) {
	// A record wraps a declare's arguments (the record, its fields, the arguments), which a
	// client may nest as deep as any field table.
	t, _, err := amqp.ReadTableWrapping(b, 3)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	k, ok := t["k"].(string)
	if !ok || k == "" {
		return Record{}, fmt.Errorf("%w: no kind", ErrBadRecord)
	}
	r := Record{Kind: Kind(k)}
	r.VHost, _ = t["v"].(string)
	r.Name, _ = t["n"].(string)
	r.Delete, _ = t["del"].(bool)
	r.Node, _ = t["nd"].(string)
	for _, f := range reserved {
		delete(t, f)
	}
	if len(t) > 0 {
		r.Fields = t
	}
	return r, nil
}

// String describes the record for logs.
func (r *Record) String() string {
	op := "put"
	if r.Delete {
		op = "delete"
	}
	s := op + " " + string(r.Kind)
	if r.VHost != "" {
		s += " vhost '" + r.VHost + "'"
	}
	if r.Name != "" {
		s += " '" + r.Name + "'"
	}
	if r.Kind == KindBinding {
		s += fmt.Sprintf(" '%s' -> '%s' key '%s'", r.Str("s"), r.Str("d"), r.Str("rk"))
	}
	return s
}
