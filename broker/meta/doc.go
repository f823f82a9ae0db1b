// Package meta is Warren's metadata store: every change of metadata (vhosts, users and their
// password hashes, user limits, permissions, topic permissions, runtime parameters such as
// vhost limits, policies, exchanges, queues and bindings) is a Record, proposed to a Store,
// which makes it durable and then applies it to the node's state through one Applier. The
// same Apply runs live and when the node starts (replay), so there is one code path that
// changes metadata, and one durable home for it.
//
//	st := meta.NewLogStore(defsLog, server, logger) // the single-node store over a wal.Log
//	err := st.Recover(seed)                        // at start: replay the live records
//	res, err := st.Propose(meta.Record{Kind: meta.KindPolicy, VHost: "/", Name: "ttl", Fields: f})
//
// A Store decides only where records live and in which order they are applied. The
// single-node LogStore keeps one durable record per live entity (a log of live records, no
// snapshots): a record is retired when its entity is deleted or replaced, so the log does not
// grow with restarts or with repeated changes. A replicated store (Raft) implements the same
// interface over a replicated log, with Effects that do nothing, and the callers do not change.
//
// # Records
//
// A Record puts (creates or replaces) or deletes one entity, named by its Key. Records are
// encoded as an AMQP field table: "k" kind, "v" vhost, "n" name, "del" for a delete, and the
// kind's own fields (the encoding of the definition records Warren wrote before this package,
// which are read unchanged). Transient records (non-durable exchanges and queues, exclusive
// queues, bindings with a transient end) are applied without being written: they do not
// survive a restart, as in RabbitMQ.
package meta
