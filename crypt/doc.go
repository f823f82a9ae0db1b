// Package crypt seals log records at rest with AES-256-GCM: Warren's encryption at rest. It
// knows nothing of AMQP or of the log; a *Cipher satisfies wal.Cipher structurally. It is a leaf
// (standard library only).
//
// A Key is 32 random bytes, read from a file as raw bytes or 64 hex digits, identified by its
// 8-byte ID. A Keyring holds the keys of one scope (a vhost, or the node): the first seals, all
// of them open, so that records sealed before a rotation stay readable until they are retired. A
// Keyring without keys stores plaintext and reports sealed records as ErrNoKey. Each open log
// gets its own Cipher from Keyring.Cipher, bound to the log's name.
//
// # Usage
//
//	k, err := crypt.LoadKeyFile("/etc/warren/orders.key") // 32 raw bytes or 64 hex digits
//	ring, err := crypt.NewKeyring(k, old)                 // k seals; k and old open
//	c := ring.Cipher("vhost 'orders'", "wal/q-1f3a…")      // label for errors, binding for the AAD
//	sealed := c.Seal(nil, payload, offset)
//	plain, err := c.Open(nil, sealed, offset) // errors.Is(err, crypt.ErrAuth): tampered
//
// # Sealed format
//
//	magic    2 bytes   0xE7 0x00
//	version  1 byte    1
//	key id   8 bytes   Key.ID of the sealing key
//	salt    16 bytes   random, chosen once per Cipher (per log per process start)
//	counter  8 bytes   big endian, 1, 2, 3, … per Cipher
//	sealed   rest      AES-256-GCM ciphertext of the payload and its 16-byte tag
//
// The record key is HKDF-SHA256(key, salt, "warren record key v1"); the 96-bit GCM nonce is four
// zero bytes and the counter; the additional data is the 35 header bytes, the record's offset
// (8 bytes, big endian) and the binding. A sealed record is 51 bytes longer than its payload.
//
// # Nonces
//
// A log's offsets are not unique over time: appends that had not become durable when the
// process crashed have their offsets assigned again, a deleted queue's log starts again from 1,
// and spill logs are wiped at every start. So the nonce does not come from the offset. Each
// Cipher draws a 128-bit random salt and derives its own record key from it, then counts
// nonces from 1: a (key, nonce) pair never repeats within a Cipher, and two Ciphers share a
// record key only if their salts collide (about 2^-64 after 2^32 log openings). Random 96-bit
// nonces under the one key would allow only about 2^32 records per key (NIST SP 800-38D), a
// day or two of traffic for a busy node, and cost a system call per record.
//
// The offset and the binding in the additional data make a record fail authentication
// (ErrAuth) when it is moved to another offset or copied into another log. Per-record sealing
// does not detect whole records removed or a log rolled back to an older copy.
//
// # Plaintext
//
// Open must tell plaintext from sealed records (a node started without its keys must refuse
// sealed records rather than misread them), so callers must never seal or store a plaintext that
// begins with 0xE7 0x00. Payloads that begin with a canonical uvarint (Warren's queue and spill
// records do) never do: a uvarint never ends in a zero byte after a continuation byte. A
// Keyring with keys refuses plaintext records (ErrNotSealed), so a sealed record cannot be
// swapped for a forged plaintext one; Keyring.AllowingPlaintext lifts that while records from
// before encryption was turned on remain.
package crypt
