package exchange

import "github.com/warrenmq/warren/amqp"

// direct routes by exact routing key: a map lookup.
type direct struct {
	byKey map[string][]Binding
}

func newDirect() *direct { return &direct{byKey: make(map[string][]Binding)} }

func (d *direct) add(b Binding) bool {
	for _, e := range d.byKey[b.Key] {
		if sameBinding(e, b) {
			return false
		}
	}
	d.byKey[b.Key] = append(d.byKey[b.Key], b)
	return true
}

func (d *direct) has(b Binding) bool { return hasBinding(d.byKey[b.Key], b) }

func (d *direct) remove(b Binding) bool {
	l := d.byKey[b.Key]
	for i, e := range l {
		if sameBinding(e, b) {
			l = append(l[:i:i], l[i+1:]...)
			if len(l) == 0 {
				delete(d.byKey, b.Key)
			} else {
				d.byKey[b.Key] = l
			}
			return true
		}
	}
	return false
}

func (d *direct) route(key string, _ func() amqp.Table, out []Destination) []Destination {
	for _, b := range d.byKey[key] {
		out = append(out, b.Dest)
	}
	return out
}
