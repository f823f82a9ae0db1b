package broker

import (
	"sync/atomic"

	"github.com/warrenmq/warren/broker/vhost"
)

// Churn counts connections, channels and queues opened and closed since the node started, as
// RabbitMQ's rabbitmq_connections_opened_total, rabbitmq_channels_closed_total and the like
// (vhost.QueueCounters for queues). A connection counts once its handshake completes; a
// channel when channel.open succeeds, and as closed however it ends (channel.close, an
// exception, its connection going away). Atomics: connection goroutines count without a lock.
type Churn struct {
	ConnectionsOpened atomic.Uint64
	ConnectionsClosed atomic.Uint64
	ChannelsOpened    atomic.Uint64
	ChannelsClosed    atomic.Uint64
	Queues            vhost.QueueCounters
}

// Churn returns the node's churn counters (read them with Load).
func (s *Server) Churn() *Churn { return &s.churn }

// ResidentMemory returns the process's resident set size in bytes, the figure the memory
// alarm compares with its watermark (0 if unknown).
func (s *Server) ResidentMemory() int64 { return processRSS() }

// TCPSockets returns the open client sockets (connections accepted and not yet closed,
// handshakes included).
func (s *Server) TCPSockets() int64 { return s.sockets.Load() }
