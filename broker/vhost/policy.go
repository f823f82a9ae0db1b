package vhost

import (
	"fmt"
	"math"
	"sort"

	"github.com/warrenmq/warren/amqp"
	"github.com/warrenmq/warren/broker/exchange"
	"github.com/warrenmq/warren/broker/meta"
	"github.com/warrenmq/warren/broker/queue"
)

// Policy is an operator-defined rule, as RabbitMQ's: queues and/or exchanges whose name matches
// Pattern get Definition. Of the policies matching an object, the one with the highest
// Priority applies (ties: the name that sorts first). Queue arguments and policy keys combine
// as in RabbitMQ: for numeric limits (message-ttl, expires, max-length, max-length-bytes,
// delivery-limit) the lower value wins; for the others the queue's own argument wins.
type Policy struct {
	Name       string
	Pattern    string
	ApplyTo    string // "queues", "exchanges" or "all"
	Priority   int
	Definition amqp.Table

	re *Pattern
}

// policyQueueKeys maps policy definition keys to queue arguments; min marks numeric limits
// where the lower of argument and policy wins.
var policyQueueKeys = map[string]struct {
	arg string
	min bool
}{
	"message-ttl":             {"x-message-ttl", true},
	"expires":                 {"x-expires", true},
	"max-length":              {"x-max-length", true},
	"max-length-bytes":        {"x-max-length-bytes", true},
	"delivery-limit":          {"x-delivery-limit", true},
	"dead-letter-exchange":    {"x-dead-letter-exchange", false},
	"dead-letter-routing-key": {"x-dead-letter-routing-key", false},
	"overflow":                {"x-overflow", false},
	"queue-mode":              {"x-queue-mode", false},
	"queue-master-locator":    {"x-queue-master-locator", false},
	"queue-leader-locator":    {"x-queue-leader-locator", false},
	"warren-replication":      {"x-warren-replication", false}, // a quorum queue's, fixed at its declare
}

// ValidatePolicy checks a policy as RabbitMQ does (pattern, apply-to, known keys with the
// right types) and compiles its pattern.
func ValidatePolicy(p *Policy) error {
	switch p.ApplyTo {
	case "":
		p.ApplyTo = "all"
	case "queues", "exchanges", "all":
	default:
		return fmt.Errorf("vhost: policy %q: invalid apply-to %q", p.Name, p.ApplyTo)
	}
	re, err := CompilePattern(p.Pattern)
	if err != nil {
		return fmt.Errorf("vhost: policy %q: invalid pattern: %w", p.Name, err)
	}
	if len(p.Definition) == 0 {
		return fmt.Errorf("vhost: policy %q: empty definition", p.Name)
	}
	args := amqp.Table{}
	for k, v := range p.Definition {
		if k == "alternate-exchange" {
			if _, ok := v.(string); !ok {
				return fmt.Errorf("vhost: policy %q: alternate-exchange must be a string", p.Name)
			}
			continue
		}
		if IgnoredPolicyKey(k) {
			continue
		}
		m, ok := policyQueueKeys[k]
		if !ok {
			return fmt.Errorf("vhost: policy %q: unknown key %q", p.Name, k)
		}
		switch k {
		case "queue-master-locator":
			if _, ok := queue.MasterLocator(v); !ok {
				return fmt.Errorf("vhost: policy %q: %q is not a valid queue-master-locator (client-local, min-masters, random)", p.Name, v)
			}
			continue
		case "queue-leader-locator":
			if s, _ := v.(string); s != "client-local" && s != "balanced" {
				return fmt.Errorf("vhost: policy %q: %q is not a valid queue-leader-locator (client-local, balanced)", p.Name, v)
			}
			continue
		}
		args[m.arg] = normalizeNumber(v)
	}
	if err := validateQueueArgs(args, true); err != nil {
		return fmt.Errorf("vhost: policy %q: %v", p.Name, err)
	}
	p.re = re
	return nil
}

// ignoredPolicyKeys are RabbitMQ 3.x policy keys that have no meaning in Warren: classic
// mirrored queues' (ha-*), which a node has no use for (replication is the cluster's, not a
// policy's). Definitions exported from RabbitMQ carry them; they are accepted, kept (so that
// the policy exports as it was imported) and ignored.
var ignoredPolicyKeys = map[string]bool{
	"ha-mode": true, "ha-params": true, "ha-sync-mode": true, "ha-sync-batch-size": true,
	"ha-promote-on-shutdown": true, "ha-promote-on-failure": true,
}

// IgnoredPolicyKey reports whether a policy key is accepted without effect (ha-*).
func IgnoredPolicyKey(k string) bool { return ignoredPolicyKeys[k] }

// same reports whether two validated policies are equal.
func (p *Policy) same(o *Policy) bool {
	return p.Name == o.Name && p.Pattern == o.Pattern && p.ApplyTo == o.ApplyTo && p.Priority == o.Priority &&
		string(amqp.AppendTable(nil, p.Definition)) == string(amqp.AppendTable(nil, o.Definition))
}

// normalizeNumber turns JSON numbers (float64) into integers when they are whole; a whole
// number beyond int64 (RabbitMQ takes any integer) becomes the nearest int64.
func normalizeNumber(v any) any {
	f, ok := v.(float64)
	switch {
	case !ok || f != math.Trunc(f):
		return v
	case f >= math.MaxInt64:
		return int64(math.MaxInt64)
	case f <= math.MinInt64:
		return int64(math.MinInt64)
	}
	return int64(f)
}

func (p *Policy) applies(kind string, name string) bool {
	if p.ApplyTo != "all" && p.ApplyTo != kind {
		return false
	}
	return p.re.MatchString(name)
}

// policyForLocked returns the policy that applies to the object (nil if none).
func (v *VHost) policyForLocked(kind, name string) *Policy {
	var best *Policy
	for _, p := range v.policies {
		if !p.applies(kind, name) {
			continue
		}
		if best == nil || p.Priority > best.Priority || (p.Priority == best.Priority && p.Name < best.Name) {
			best = p
		}
	}
	return best
}

// EffectiveArgs returns a queue's arguments combined with its policy, and the policy's name.
func (v *VHost) effectiveQueueArgsLocked(q *queue.Queue) (amqp.Table, string) {
	p := v.policyForLocked("queues", q.Name)
	if p == nil {
		return q.Args, ""
	}
	eff := amqp.Table{}
	for k, val := range q.Args {
		eff[k] = val
	}
	for k, val := range p.Definition {
		m, ok := policyQueueKeys[k]
		if !ok {
			continue
		}
		val = normalizeNumber(val)
		cur, has := eff[m.arg]
		if !has {
			eff[m.arg] = val
			continue
		}
		if m.min {
			a, aok := intArg(cur)
			b, bok := intArg(val)
			if aok && bok && b < a {
				eff[m.arg] = val
			}
		}
	}
	return eff, p.Name
}

// queuePolicyLocked records the policy of q and returns the configuration to apply. The
// caller applies it with q.Configure after releasing v.mu (Configure may dead-letter, which
// routes through the vhost).
func (v *VHost) queuePolicyLocked(q *queue.Queue) queue.Config {
	eff, name := v.effectiveQueueArgsLocked(q)
	if name == "" {
		delete(v.queuePolicy, q)
	} else {
		v.queuePolicy[q] = name
	}
	return queue.ParseConfig(eff)
}

// alternateLocked returns the alternate exchange of x: its argument, else its policy's.
func (v *VHost) alternateLocked(x *exchange.Exchange) (string, bool) {
	if ae, ok := x.Args["alternate-exchange"].(string); ok {
		return ae, true
	}
	if p := v.policyForLocked("exchanges", x.Name); p != nil {
		if ae, ok := p.Definition["alternate-exchange"].(string); ok {
			return ae, true
		}
	}
	return "", false
}

// SetPolicy adds or replaces a policy and applies it to existing queues and exchanges.
func (v *VHost) SetPolicy(p Policy) error {
	if err := ValidatePolicy(&p); err != nil {
		return err
	}
	v.mu.RLock()
	old := v.policies[p.Name]
	v.mu.RUnlock()
	if old != nil && old.same(&p) {
		return nil // unchanged: nothing to write (an import at every start adds nothing)
	}
	_, err := v.propose(policyRecord(p))
	return err
}

// DeletePolicy removes a policy; false if there was none.
func (v *VHost) DeletePolicy(name string) (bool, error) {
	v.mu.RLock()
	_, ok := v.policies[name]
	v.mu.RUnlock()
	if !ok {
		return false, nil
	}
	res, err := v.propose(meta.Record{Kind: meta.KindPolicy, Delete: true, Name: name})
	if err != nil {
		return false, err
	}
	return res.(bool), nil
}

// Policies returns the vhost's policies, sorted by name.
func (v *VHost) Policies() []Policy {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Policy, 0, len(v.policies))
	for _, p := range v.policies {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// QueuePolicy returns the name of the policy applied to q ("" if none).
func (v *VHost) QueuePolicy(q *queue.Queue) string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.queuePolicy[q]
}

// reapplyPoliciesLocked computes every queue's configuration; the returned func applies them
// (call it after unlocking).
func (v *VHost) reapplyPoliciesLocked() func() {
	type qc struct {
		q *queue.Queue
		c queue.Config
	}
	var todo []qc
	for _, q := range v.queues {
		todo = append(todo, qc{q, v.queuePolicyLocked(q)})
	}
	return func() {
		for _, t := range todo {
			t.q.Configure(t.c)
		}
	}
}

// ApplyPolicies re-applies the policies to every queue (after recovery).
func (v *VHost) ApplyPolicies() {
	v.mu.Lock()
	apply := v.reapplyPoliciesLocked()
	v.mu.Unlock()
	apply()
}
