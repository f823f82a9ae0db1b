package queue

// readyList is the in-memory ready list. A classic queue has one level; a priority queue
// (x-max-priority) one level per priority, highest served first, each in offset order.
type readyList struct {
	levels []deque // levels[0] is the lowest priority
	n      int
}

func (r *readyList) setLevels(n int) {
	if n < 1 {
		n = 1
	}
	r.levels = make([]deque, n)
}

func (r *readyList) level(e *Entry) *deque {
	if len(r.levels) == 0 {
		r.levels = make([]deque, 1)
	}
	p := 0
	if len(r.levels) > 1 {
		p = int(e.Msg.Props.Priority)
		if p >= len(r.levels) {
			p = len(r.levels) - 1
		}
	}
	return &r.levels[p]
}

func (r *readyList) Len() int { return r.n }

// top returns the highest non-empty level.
func (r *readyList) top() *deque {
	for i := len(r.levels) - 1; i >= 0; i-- {
		if r.levels[i].Len() > 0 {
			return &r.levels[i]
		}
	}
	return nil
}

func (r *readyList) Front() *Entry { return r.top().Front() }

func (r *readyList) PopFront() Entry {
	r.n--
	return r.top().PopFront()
}

func (r *readyList) PushBack(e Entry) {
	r.n++
	r.level(&e).PushBack(e)
}

func (r *readyList) Insert(e Entry) {
	r.n++
	r.level(&e).Insert(e)
}

// each calls f for every entry, highest priority first.
func (r *readyList) each(f func(e *Entry)) {
	for i := len(r.levels) - 1; i >= 0; i-- {
		d := &r.levels[i]
		for j := 0; j < d.Len(); j++ {
			f(d.At(j))
		}
	}
}

func (r *readyList) Clear() int {
	n := r.n
	for i := range r.levels {
		r.levels[i].Clear()
	}
	r.n = 0
	return n
}
