// Package wal is Warren's per-queue write-ahead log: opaque records with offsets, group commit,
// checksums, tail repair and space reclamation, on top of github.com/tidwall/wal. It knows nothing
// of AMQP.
//
// A Manager owns a folder holding one log per name (one per durable queue) and one commit
// goroutine shared by all of them. Log.Append returns the record's offset at once; the record is
// durable when its done callback runs. Appends from any number of goroutines and logs are gathered
// while the previous fsync runs, then each touched log is written and fsynced once, then the
// callbacks run: one fsync per log per commit, however many appends it holds (group commit).
// Log.Retire and Log.MarkDelivered write their records with the next commit and do not wait.
//
// # What is durable
//
// A data record is durable (it survives a crash of the process or the machine) once its done
// callback ran with a nil error: that is when a publisher confirm may go out. A retirement or
// delivery hint is durable after the commit that follows the call; if the machine crashes before,
// the message comes back on recovery (at-least-once), or without its redelivered flag. Records
// whose done had not run may be lost, and their offsets are then assigned again. A record whose
// done ran with an error never comes back (but see Write faults). Config.NoSync (tests only)
// makes nothing durable across a machine crash.
//
// # Usage
//
//	m, err := wal.Open(wal.Config{Dir: "/var/lib/warren/queues", Logger: logger})
//	if err != nil { ... }
//	defer m.Close()
//	l, err := m.Log("q-orders") // opens, checks and repairs, or creates
//	if err != nil { ... }        // errors.Is(err, wal.ErrCorrupt): this queue is out of service
//	err = l.Replay(func(e wal.Entry) error { // recovery: the live records, in order
//		return q.Restore(e.Offset, e.Payload, e.Delivered) // Payload is only valid during the call
//	})
//	off := l.Append(body, func(off uint64, err error) { confirm(off, err) }) // runs after fsync
//	l.MarkDelivered(off) // handed to a consumer
//	l.Retire(off)        // acked: the space is reclaimed once whole segments are dead
//
// # On-disk format
//
// Each log is the folder Dir/<name>/ of tidwall/wal segment files. A segment is named after the
// offset of its first record as 20 decimal digits (00000000000000000001) and holds records back to
// back, each framed by tidwall/wal as
//
//	uvarint(len(envelope)) envelope
//
// where the envelope is ours:
//
//	kind   1 byte    1 data, 2 retire, 3 delivered (0 is never valid, so zeroed space never decodes)
//	crc    4 bytes   CRC-32C (Castagnoli) of kind and body, little endian
//	body   rest      data: the payload, sealed by Config.Cipher when one is set
//	                 retire, delivered: offsets in ascending order, the first as a uvarint and
//	                 each following one as the uvarint difference to its predecessor
//
// A void record is a retire record that names its own offset and nothing else: it holds the
// place of an append whose write failed (see Write faults), so that offsets stay dense. Readers
// skip it (a retire record retires the offsets below its own); Config.OnAppend, ReadRaw and
// ApplyRaw carry it like any record.
//
// Offsets are tidwall indexes: strictly increasing from 1 without gaps, over records of all
// kinds. A new segment starts once the current one reaches Config.SegmentSize. A retire or
// delivered record only names offsets below its own (a void record names its own). tidwall/wal
// may leave NNN.START / NNN.END files after a crash inside a truncation; opening the log
// completes or undoes it.
//
// # Recovery and damage
//
// Manager.Log reads every segment and checks every record. Damage at the end of the last segment
// that a crash during an unsynced write explains is a torn write: invalid data with no valid
// record behind it, or with a zero-filled 512-byte sector between it and the next valid record
// (pages written out of order, as etcd's torn-entry check assumes). It is cut off with a Warn log
// line and the log opens normally; no acknowledged record is lost unless the device lost or
// damaged fsynced data. Any other damage (a bad checksum or framing before valid records, a
// segment holding the wrong number of records, a missing segment) is reported as a *CorruptError
// wrapping ErrCorrupt, with an Error log line; that log stays out of service and every other log
// works. The same applies to damage found later by a read (Log.Err reports it).
//
// # Write faults
//
// A write or fsync that fails with ENOSPC (the device is full), EDQUOT (a quota is exhausted) or
// EIO does not put the log out of service. The commit goroutine cuts the log's files back to the
// acknowledged records (it removes segment files the failed commit created, truncates the tail
// segment, writes its last page again, fsyncs all that and checks the tail's checksums), so that
// nothing torn or unacknowledged stays on disk. Then every append of the failed commit that has a
// done callback is told the error (a publisher gets basic.nack, never a confirm), and its record
// becomes a void record; the other records of the commit (appends without done, retirements,
// delivery hints: nobody was told they failed) go back, at the same offsets, in front of the
// records gathered meanwhile. Offsets handed out stay valid and dense: a void offset is no longer
// live, so Read returns ErrRetired and Retire and MarkDelivered ignore it. The log then writes
// nothing until it retries, 100 ms later, then after pauses doubling up to 1 s; after ENOSPC an
// attempt also waits (looking every 50 ms) until the file system has room for what the log holds,
// so that a full device costs no failed writes, logs with little to write (retirements and
// delivery hints) get the room first, and each log writes within 50 ms of space coming back.
// Appends and Sync calls meanwhile wait for that attempt, and get the error if it fails too. The
// first write that succeeds ends the fault. Log.Fault reports a fault, Manager.WriteFaults counts them, and
// Config.OnFault is called when one starts and ends (cmd/warren raises the disk alarm then).
// Config.FailWrite injects faults for tests.
//
// EIO passes too because the log relies on nothing the failed write may have left: what was
// acknowledged had been fsynced before, everything after it is cut off, and the page that held
// both is written again and fsynced before the log writes again; a device that keeps failing
// keeps the log retrying (its appends fail). Any other error (EROFS, EBADF, ...) still puts the
// log out of service. If the cut back itself fails, it is tried again before the next write,
// and until it succeeds a crash may bring back records whose appends were told they failed
// (as a crash during any unacknowledged write may keep it). Reclaiming segments needs space too
// (tidwall/wal writes the new first segment aside); when that fails for want of it, a later
// commit tries again.
//
// # Space
//
// Retired records cannot be removed one by one: a log reclaims whole segments that lie below its
// lowest live offset (tidwall's TruncateFront), so a queue without a backlog keeps about one
// segment on disk. tidwall/wal keeps a log's tail segment in memory (plus the one segment it read
// last), so memory per open log is up to about 1.25 to 2 times Config.SegmentSize (1 MiB by
// default) plus two bits per record between the oldest live record and the newest.
//
// # Replication and encryption seams
//
// Config.OnAppend sees every record once it is durable, and Log.ReadRaw reads records of all
// kinds by offset from Log.FirstOffset to Log.SyncedOffset, so that a follower can tail the
// log (ErrNotFound from ReadRaw means the leader already reclaimed that part); both carry data
// bodies as stored, sealed when a cipher is set. Config.Cipher, or Config.CipherFor for a
// cipher per log, seals data payloads at rest. The offset passed to the cipher is bound to the
// record but is no nonce: offsets are assigned again after a crash. A payload the cipher cannot
// open (wrong or missing key, failed authentication) puts its log out of service with a
// *CipherError (ErrCipher); opening a log checks only checksums, so such records are never cut
// off as a torn tail, and the log opens normally again once the right key is configured.
package wal
