package exchange

import (
	"bytes"
	"strings"

	"github.com/warrenmq/warren/amqp"
)

// headersRouter matches the message headers against each binding's arguments (x-match all,
// any, all-with-x, any-with-x; default all). Arguments starting with "x-" take part only in the
// -with-x modes, as in RabbitMQ.
type headersRouter struct {
	list []Binding
}

func (h *headersRouter) add(b Binding) bool {
	for _, e := range h.list {
		if sameBinding(e, b) {
			return false
		}
	}
	h.list = append(h.list, b)
	return true
}

func (h *headersRouter) has(b Binding) bool { return hasBinding(h.list, b) }

func (h *headersRouter) remove(b Binding) bool {
	for i, e := range h.list {
		if sameBinding(e, b) {
			h.list = append(h.list[:i:i], h.list[i+1:]...)
			return true
		}
	}
	return false
}

func (h *headersRouter) route(_ string, headers func() amqp.Table, out []Destination) []Destination {
	if len(h.list) == 0 {
		return out
	}
	hdrs := headers()
	for _, b := range h.list {
		if HeadersMatch(b.Args, hdrs) {
			out = append(out, b.Dest)
		}
	}
	return out
}

// HeadersMatch reports whether message headers match binding arguments.
func HeadersMatch(args, headers amqp.Table) bool {
	mode, _ := args["x-match"].(string)
	all := true
	withX := false
	switch mode {
	case "any":
		all = false
	case "all-with-x":
		withX = true
	case "any-with-x":
		all, withX = false, true
	}
	matched := 0
	for k, want := range args {
		if k == "x-match" || (!withX && strings.HasPrefix(k, "x-")) {
			continue
		}
		got, present := headers[k]
		ok := present && (want == nil || valuesEqual(want, got))
		if all && !ok {
			return false
		}
		if !all && ok {
			return true
		}
		if ok {
			matched++
		}
	}
	return all
}

// valuesEqual compares two field values; integers compare by value across widths.
func valuesEqual(a, b any) bool {
	if ai, ok := asInt(a); ok {
		bi, ok := asInt(b)
		return ok && ai == bi
	}
	switch av := a.(type) {
	case []byte: // longstr and byte array compare as binaries, as in RabbitMQ
		switch bv := b.(type) {
		case []byte:
			return bytes.Equal(av, bv)
		case string:
			return string(av) == bv
		}
		return false
	case string:
		switch bv := b.(type) {
		case string:
			return av == bv
		case []byte:
			return av == string(bv)
		}
		return false
	case amqp.Table:
		bv, ok := b.(amqp.Table)
		return ok && tablesEqual(av, bv)
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !valuesEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	defer func() { recover() }() // uncomparable dynamic types are simply unequal
	return a == b
}

func asInt(v any) (int64, bool) { return amqp.IntValue(v) }
