package exchange

import "github.com/warrenmq/warren/amqp"

// fanout routes to every bound destination, ignoring the key.
type fanout struct {
	list []Binding
}

func (f *fanout) add(b Binding) bool {
	for _, e := range f.list {
		if sameBinding(e, b) {
			return false
		}
	}
	f.list = append(f.list, b)
	return true
}

func (f *fanout) has(b Binding) bool { return hasBinding(f.list, b) }

func (f *fanout) remove(b Binding) bool {
	for i, e := range f.list {
		if sameBinding(e, b) {
			f.list = append(f.list[:i:i], f.list[i+1:]...)
			return true
		}
	}
	return false
}

func (f *fanout) route(_ string, _ func() amqp.Table, out []Destination) []Destination {
	for _, b := range f.list {
		out = append(out, b.Dest)
	}
	return out
}
