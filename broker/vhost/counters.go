package vhost

import "sync/atomic"

// QueueCounters count queue churn node-wide, as RabbitMQ's rabbitmq_queues_declared_total,
// rabbitmq_queues_created_total and rabbitmq_queues_deleted_total do: every queue.declare that
// is not passive (a redeclare and a refused one too), every queue created, every queue deleted
// (by a client, auto-delete or its exclusive owner leaving). Queues recovered at start are not
// counted. Atomics, so that counting takes no lock.
type QueueCounters struct {
	Declared atomic.Uint64
	Created  atomic.Uint64
	Deleted  atomic.Uint64
}
