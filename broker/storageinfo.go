package broker

// QueueEncrypted reports whether the named queue's messages are encrypted at rest (durable
// queues with a key configured for their vhost or the node).
func (s *Server) QueueEncrypted(vhost, queue string) bool {
	e, ok := s.cfg.Storage.(interface {
		QueueEncrypted(vhost, queue string) bool
	})
	return ok && e.QueueEncrypted(vhost, queue)
}
