package broker

import (
	"sync"

	"github.com/warrenmq/warren/amqp"
)

// userChannels counts open channels per user for the users' max-channels limit (RabbitMQ:
// across all of the user's connections; over it, channel.open closes the connection with 530).
type userChannels struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *Server) channelOpen(user string) error {
	u, ok := s.users.Lookup(user)
	limit := -1
	if ok {
		limit = u.Limits.MaxChannels
	}
	s.chans.mu.Lock()
	defer s.chans.mu.Unlock()
	if s.chans.n == nil {
		s.chans.n = make(map[string]int)
	}
	if limit >= 0 && s.chans.n[user] >= limit {
		return amqp.ConnErr(amqp.NotAllowed, "number of channels opened for user '%s' has reached the maximum allowed user limit of (%d)", user, limit)
	}
	s.chans.n[user]++
	s.churn.ChannelsOpened.Add(1)
	return nil
}

func (s *Server) channelClosed(user string) {
	s.churn.ChannelsClosed.Add(1)
	s.chans.mu.Lock()
	defer s.chans.mu.Unlock()
	if s.chans.n[user] <= 1 {
		delete(s.chans.n, user)
		return
	}
	s.chans.n[user]--
}
