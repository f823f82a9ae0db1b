package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"
	tidwal "github.com/tidwall/wal"
)

// The Raft log store. Raft's latency is bound by its log store: the leader writes a batch
// before it replicates it, and every follower writes it before it answers, so a commit costs
// two sequential writes. raft-boltdb pays two fsyncs per write (bbolt's data pages, then its
// meta page); logStore pays one: a batch is one write(2) to the tail segment of a
// tidwall/wal log and one fsync (raft never calls StoreLogs concurrently, and the leader
// already gathers concurrent proposals into one StoreLogs, so that is the group commit).
//
// It is built on tidwall/wal directly, not on Warren's wal.Log: a queue log numbers its own
// bookkeeping records among the data (so its offsets cannot be Raft indexes) and never cuts its
// tail, while Raft needs the index as the position and must drop a conflicting suffix.
//
// # On-disk format
//
// DataDir/raft-log/ holds tidwall/wal segment files named after their first index (20 decimal
// digits); the tidwall index of an entry is its Raft index. Each tidwall entry is
//
//	kind    1 byte   1 (0 is never valid: zeroed space never decodes)
//	crc     4 bytes  CRC-32C (Castagnoli) of kind and body, little endian
//	body    index uvarint, type byte, term uvarint, appended-at varint (Unix ns, 0 = unset),
//	        extensions (uvarint length, bytes), data (the rest)
//
// The index in the body must equal the entry's position, so a misplaced record is caught.
//
// # Crash safety
//
// Opening the log checks every record. Damage at the end of the last segment that an unsynced
// write explains (nothing valid behind it, or a zero-filled 512-byte sector between it and the
// next valid record) is cut off with a Warn line: those entries were never acknowledged. Any
// other damage fails the open, so a node never serves a log with a hole in it. Truncations
// use tidwall's protocol (the kept part of the boundary segment is written to a .START or .END
// file and fsynced before any segment is removed, and opening finishes or undoes an
// interrupted one), followed by a directory fsync before DeleteRange returns, so a crash
// leaves either the old or the new log, never a mix. Creating a segment is made durable by a
// directory fsync as well.
//
// Dropping the whole log (after a snapshot was installed: the store is monotonic, so Raft
// deletes every entry rather than leaving a gap) removes the segment files oldest first, then
// creates an empty segment named after the next index: a crash in between leaves a suffix of
// the old log or an empty one, both covered by the snapshot.
type logStore struct {
	dir     string
	segSize int
	log     zerolog.Logger

	mu     sync.Mutex
	tw     *tidwal.Log
	broken error  // a write or truncation failed: reopen from disk before the next operation
	first  uint64 // tidwall's first index; first > last when empty
	last   uint64
	tail   int64 // bytes in the tail segment file (mirrors tidwall's segment cycling)
	batch  tidwal.Batch
	buf    []byte
}

const (
	logStoreDir        = "raft-log"
	stableStoreFile    = "raft-stable"
	boltStoreFile      = "raft.db"
	defaultRaftSegment = 4 << 20

	raftRecordKind = 1
	raftHeaderSize = 5 // kind + crc
	raftSectorSize = 512
)

var (
	errLogCorrupt = errors.New("cluster: raft log corrupt")
	raftCRCTable  = crc32.MakeTable(crc32.Castagnoli)
)

// Store kinds for Config.raftStore.
const (
	storeAuto = ""     // an existing raft.db keeps bolt; anything else uses logStore
	storeWAL  = "wal"  // logStore and the file stable store
	storeBolt = "bolt" // raft-boltdb for both
)

// openRaftStores opens the Raft log and stable stores in dir. kind is a store* constant.
func openRaftStores(dir, kind string, log zerolog.Logger) (raft.LogStore, raft.StableStore, io.Closer, string, error) {
	if kind == storeAuto {
		kind = storeWAL
		_, errDB := os.Stat(filepath.Join(dir, boltStoreFile))
		_, errLog := os.Stat(filepath.Join(dir, logStoreDir))
		if errDB == nil && errors.Is(errLog, fs.ErrNotExist) {
			kind = storeBolt // a data folder from before logStore: keep its state
		}
	}
	switch kind {
	case storeBolt:
		s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltStoreFile)})
		if err != nil {
			return nil, nil, nil, "", fmt.Errorf("cluster: raft store: %w", err)
		}
		return s, s, s, kind, nil
	case storeWAL:
		ls, err := openLogStore(filepath.Join(dir, logStoreDir), 0, log)
		if err != nil {
			return nil, nil, nil, "", err
		}
		ss, err := openStableStore(filepath.Join(dir, stableStoreFile))
		if err != nil {
			ls.Close()
			return nil, nil, nil, "", err
		}
		return ls, ss, ls, kind, nil
	}
	return nil, nil, nil, "", fmt.Errorf("cluster: unknown raft store %q", kind)
}

var (
	_ raft.LogStore          = (*logStore)(nil)
	_ raft.MonotonicLogStore = (*logStore)(nil)
	_ raft.StableStore       = (*stableStore)(nil)
)

// openLogStore opens (checking and repairing) or creates the log in dir. segSize 0 takes the
// default.
func openLogStore(dir string, segSize int, log zerolog.Logger) (*logStore, error) {
	if segSize <= 0 {
		segSize = defaultRaftSegment
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: raft log: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("cluster: raft log: %w", err)
		}
	}
	s := &logStore{dir: dir, segSize: segSize, log: log.With().Str("component", "raft_log").Logger()}
	if err := s.openLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *logStore) options() *tidwal.Options {
	return &tidwal.Options{
		SegmentSize:      s.segSize,
		SegmentCacheSize: 1,
		NoCopy:           true, // GetLog copies what it hands out
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

// openLocked finishes an interrupted truncation, checks every record, cuts a torn tail and
// opens tidwall.
func (s *logStore) openLocked() error {
	segs, leftovers, err := raftSegments(s.dir, true)
	if err != nil {
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	if leftovers {
		// A crash inside a truncation: tidwall's open completes it (the kept part was fsynced
		// before anything was removed). If it then fails, the tail is torn: repaired below.
		if tw, err := tidwal.Open(s.dir, s.options()); err == nil {
			_ = tw.Close()
		}
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("cluster: raft log: %w", err)
		}
		if segs, leftovers, err = raftSegments(s.dir, true); err != nil {
			return fmt.Errorf("cluster: raft log: %w", err)
		}
		if leftovers {
			return fmt.Errorf("%w: unfinished truncation (.START/.END files) in %s", errLogCorrupt, s.dir)
		}
	}
	if err := s.check(segs); err != nil {
		return err
	}
	tw, err := tidwal.Open(s.dir, s.options())
	if err != nil {
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	if len(segs) == 0 { // tidwall created the first segment
		if err := syncDir(s.dir); err != nil {
			_ = tw.Close()
			return fmt.Errorf("cluster: raft log: %w", err)
		}
	}
	s.tw = tw
	s.broken = nil
	s.first, _ = tw.FirstIndex()
	s.last, _ = tw.LastIndex()
	if err := s.refreshTailLocked(); err != nil {
		return err
	}
	s.log.Debug().Uint64("first_index", s.first).Uint64("last_index", s.last).Int("segments", len(segs)).Msg("raft log opened")
	return nil
}

// check reads every segment and verifies every record; it cuts a torn tail off the last one.
func (s *logStore) check(segs []segFile) error {
	var buf []byte
	for i, sg := range segs {
		path := filepath.Join(s.dir, sg.name())
		var err error
		if buf, err = readAll(path, buf); err != nil {
			return fmt.Errorf("cluster: raft log: %w", err)
		}
		n, pos, why := scanRaftSegment(buf, sg.start)
		if i < len(segs)-1 {
			if why != "" {
				return fmt.Errorf("%w: %s at index %d in segment %s", errLogCorrupt, why, sg.start+uint64(n), sg.name())
			}
			if want := segs[i+1].start - sg.start; uint64(n) != want {
				return fmt.Errorf("%w: segment %s holds %d entries, want %d", errLogCorrupt, sg.name(), n, want)
			}
			continue
		}
		if why == "" {
			break
		}
		if !tornRaftTail(buf, pos) {
			return fmt.Errorf("%w: %s at index %d before valid records in segment %s", errLogCorrupt, why, sg.start+uint64(n), sg.name())
		}
		if err := truncateAndSync(path, int64(pos)); err != nil {
			return fmt.Errorf("cluster: raft log: repair: %w", err)
		}
		s.log.Warn().Str("segment", sg.name()).Uint64("index", sg.start+uint64(n)).Int("bytes_cut", len(buf)-pos).
			Str("reason", why).Msg("raft log: cut a torn tail (entries never acknowledged)")
	}
	return nil
}

// reopenLocked closes tidwall and opens the log again from disk, after a failed operation left
// tidwall's in-memory state in doubt.
func (s *logStore) reopenLocked() error {
	if s.tw != nil {
		_ = s.tw.Close()
		s.tw = nil
	}
	if err := s.openLocked(); err != nil {
		s.broken = err
		return err
	}
	s.log.Info().Uint64("last_index", s.last).Msg("raft log reopened after an error")
	return nil
}

func (s *logStore) readyLocked() error {
	if s.tw == nil && s.broken == nil {
		return raft.ErrRaftShutdown
	}
	if s.broken != nil {
		return s.reopenLocked()
	}
	return nil
}

// failLocked records that tidwall's state is in doubt after err.
func (s *logStore) failLocked(what string, err error) error {
	err = fmt.Errorf("cluster: raft log: %s: %w", what, err)
	s.broken = err
	return err
}

func (s *logStore) refreshTailLocked() error {
	segs, _, err := raftSegments(s.dir, false)
	if err != nil {
		return fmt.Errorf("cluster: raft log: %w", err)
	}
	s.tail = 0
	if len(segs) > 0 {
		s.tail = segs[len(segs)-1].size
	}
	return nil
}

// IsMonotonic tells Raft never to leave a gap: after a snapshot is installed it deletes every
// entry instead.
func (s *logStore) IsMonotonic() bool { return true }

// FirstIndex returns the first index held, 0 when empty.
func (s *logStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first > s.last {
		return 0, nil
	}
	return s.first, nil
}

// LastIndex returns the last index held, 0 when empty.
func (s *logStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first > s.last {
		return 0, nil
	}
	return s.last, nil
}

// GetLog reads the entry at index into out (whose slices it allocates), or returns
// raft.ErrLogNotFound.
func (s *logStore) GetLog(index uint64, out *raft.Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return err
	}
	if index < s.first || index > s.last {
		return raft.ErrLogNotFound
	}
	data, err := s.readLocked(index)
	if errors.Is(err, tidwal.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("cluster: raft log: read %d: %w", index, err)
	}
	if why := decodeRaftRecord(data, index, out); why != "" {
		return fmt.Errorf("%w: %s at index %d", errLogCorrupt, why, index)
	}
	return nil
}

// readLocked is tidwall's Read, which indexes its tables without bounds checks: a file damaged
// while the log is open must not crash the node.
func (s *logStore) readLocked(index uint64) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", tidwal.ErrCorrupt, r)
		}
	}()
	return s.tw.Read(index)
}

// StoreLog stores one entry.
func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends entries with consecutive indexes and returns once they are durable (one
// write and one fsync). An index at or below the last one replaces the entries from there on;
// an index beyond last+1 (a gap: only after a snapshot) drops the whole log first.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("cluster: raft log: entries %d and %d are not consecutive", logs[i-1].Index, logs[i].Index)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return err
	}
	idx := logs[0].Index
	if idx == 0 {
		return errors.New("cluster: raft log: index 0")
	}
	switch {
	case idx == s.last+1:
	case idx > s.first && idx <= s.last:
		if err := s.truncateBackLocked(idx - 1); err != nil {
			return err
		}
	default:
		if s.first <= s.last {
			s.log.Warn().Uint64("first_index", s.first).Uint64("last_index", s.last).Uint64("index", idx).
				Msg("raft log: entries not contiguous with the log; dropping the log")
		}
		if err := s.resetLocked(idx); err != nil {
			return err
		}
	}
	b := &s.batch
	b.Clear()
	cycled := s.tail > int64(s.segSize)
	if cycled {
		s.tail = 0
	}
	for _, l := range logs {
		s.buf = appendRaftRecord(s.buf[:0], l)
		b.Write(l.Index, s.buf)
		n := int64(len(s.buf))
		if s.tail += uvarintSize(uint64(n)) + n; s.tail >= int64(s.segSize) {
			cycled, s.tail = true, 0
		}
	}
	err := s.tw.WriteBatch(b) // fsyncs (tidwall's NoSync is off)
	if len(s.buf) > 1<<20 {
		s.buf, *b = nil, tidwal.Batch{} // don't keep a large entry's copies
	}
	if err != nil {
		return s.failLocked("write", err)
	}
	s.last = logs[len(logs)-1].Index
	if cycled {
		if err := syncDir(s.dir); err != nil {
			return s.failLocked("sync folder", err)
		}
	}
	return nil
}

// DeleteRange deletes the entries from min to max inclusive. The range must touch an end of
// the log (Raft cuts the head after a snapshot and the tail on a conflict); deleting a range
// in the middle is refused.
func (s *logStore) DeleteRange(min, max uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return err
	}
	if min > max || s.first > s.last || max < s.first || min > s.last {
		return nil
	}
	switch {
	case min <= s.first && max >= s.last:
		return s.resetLocked(s.last + 1)
	case min <= s.first:
		if err := s.tw.TruncateFront(max + 1); err != nil {
			return s.failLocked("truncate front", err)
		}
		s.first = max + 1
	case max >= s.last:
		return s.truncateBackLocked(min - 1)
	default:
		return fmt.Errorf("cluster: raft log: deleting %d-%d inside %d-%d is not supported", min, max, s.first, s.last)
	}
	return s.afterTruncateLocked()
}

func (s *logStore) truncateBackLocked(last uint64) error {
	if err := s.tw.TruncateBack(last); err != nil {
		return s.failLocked("truncate back", err)
	}
	s.last = last
	return s.afterTruncateLocked()
}

// afterTruncateLocked makes a truncation's renames and removals durable.
func (s *logStore) afterTruncateLocked() error {
	if err := syncDir(s.dir); err != nil {
		return s.failLocked("sync folder", err)
	}
	if err := s.refreshTailLocked(); err != nil {
		s.broken = err
		return err
	}
	return nil
}

// resetLocked drops every entry and makes next the index of the next entry: it removes the
// segment files oldest first (a crash leaves a suffix of the log, or nothing) and creates an
// empty segment named next, which tidwall opens as an empty log positioned there.
func (s *logStore) resetLocked(next uint64) error {
	if s.tw != nil {
		_ = s.tw.Close()
		s.tw = nil
	}
	s.broken = errors.New("cluster: raft log: reset interrupted")
	segs, _, err := raftSegments(s.dir, true)
	if err != nil {
		return s.failLocked("reset", err)
	}
	for _, sg := range segs {
		if err := os.Remove(filepath.Join(s.dir, sg.name())); err != nil {
			return s.failLocked("reset", err)
		}
	}
	if err := syncDir(s.dir); err != nil {
		return s.failLocked("reset", err)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segFile{start: next}.name()), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o640)
	if err != nil {
		return s.failLocked("reset", err)
	}
	if err := f.Close(); err != nil {
		return s.failLocked("reset", err)
	}
	if err := syncDir(s.dir); err != nil {
		return s.failLocked("reset", err)
	}
	if err := s.openLocked(); err != nil {
		s.broken = err
		return err
	}
	if s.first != next || s.last != next-1 {
		return s.failLocked("reset", fmt.Errorf("opened at %d-%d, want empty at %d", s.first, s.last, next))
	}
	return nil
}

// Close closes the log; later calls fail with raft.ErrRaftShutdown.
func (s *logStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tw == nil {
		s.broken = nil
		return nil
	}
	err := s.tw.Close()
	s.tw, s.broken = nil, nil
	if err != nil && !errors.Is(err, tidwal.ErrClosed) {
		return fmt.Errorf("cluster: raft log: close: %w", err)
	}
	return nil
}

// ---- records

func appendRaftRecord(dst []byte, l *raft.Log) []byte {
	start := len(dst)
	dst = append(dst, raftRecordKind, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = append(dst, byte(l.Type))
	dst = binary.AppendUvarint(dst, l.Term)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, at)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	dst = append(dst, l.Data...)
	binary.LittleEndian.PutUint32(dst[start+1:], raftRecordCRC(dst[start:]))
	return dst
}

// raftRecordCRC is the checksum of a record: its kind byte and body.
func raftRecordCRC(rec []byte) uint32 {
	c := crc32.Update(0, raftCRCTable, rec[:1])
	return crc32.Update(c, raftCRCTable, rec[raftHeaderSize:])
}

// decodeRaftRecord checks a record expected at index and, when out is not nil, fills out with
// copies of its slices. It returns why the record is invalid, or "".
func decodeRaftRecord(rec []byte, index uint64, out *raft.Log) string {
	if len(rec) < raftHeaderSize {
		return "short record"
	}
	if rec[0] != raftRecordKind {
		return "unknown record kind"
	}
	if binary.LittleEndian.Uint32(rec[1:]) != raftRecordCRC(rec) {
		return "checksum mismatch"
	}
	b := rec[raftHeaderSize:]
	idx, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+1 {
		return "bad header"
	}
	if idx != index {
		return fmt.Sprintf("record of index %d", idx)
	}
	typ := b[n]
	b = b[n+1:]
	term, n := binary.Uvarint(b)
	if n <= 0 {
		return "bad term"
	}
	b = b[n:]
	at, n := binary.Varint(b)
	if n <= 0 {
		return "bad time"
	}
	b = b[n:]
	el, n := binary.Uvarint(b)
	if n <= 0 || el > uint64(len(b)-n) {
		return "bad extensions"
	}
	ext := b[n : n+int(el)]
	data := b[n+int(el):]
	if out == nil {
		return ""
	}
	*out = raft.Log{Index: idx, Term: term, Type: raft.LogType(typ)}
	if at != 0 {
		out.AppendedAt = time.Unix(0, at)
	}
	if len(ext) > 0 {
		out.Extensions = slices.Clone(ext)
	}
	if len(data) > 0 {
		out.Data = slices.Clone(data)
	}
	return ""
}

// ---- segment files

type segFile struct {
	start uint64
	size  int64
}

func (f segFile) name() string { return fmt.Sprintf("%020d", f.start) }

// raftSegments lists the segment files of dir in order. leftovers reports the .START/.END files
// of an interrupted tidwall truncation; with cleanup, the .TEMP files of one are removed.
func raftSegments(dir string, cleanup bool) (segs []segFile, leftovers bool, err error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || len(name) < 20 {
			continue
		}
		start, perr := strconv.ParseUint(name[:20], 10, 64)
		if perr != nil || start == 0 {
			continue
		}
		switch rest := name[20:]; {
		case rest == "":
			fi, err := de.Info()
			if err != nil {
				return nil, false, err
			}
			segs = append(segs, segFile{start: start, size: fi.Size()})
		case rest == ".START" || rest == ".END":
			leftovers = true
		case cleanup && strings.HasSuffix(rest, ".TEMP"):
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, false, err
			}
		}
	}
	slices.SortFunc(segs, func(a, b segFile) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	return segs, leftovers, nil
}

// scanRaftSegment walks the entries of a segment (tidwall's framing: uvarint length, entry) whose
// first index is start, checking each record. It returns the number of valid records, the byte
// position where they end, and why it stopped ("" at the end of the data).
func scanRaftSegment(data []byte, start uint64) (n, pos int, why string) {
	for pos < len(data) {
		size, w := binary.Uvarint(data[pos:])
		if w <= 0 {
			return n, pos, "bad length"
		}
		if size > uint64(len(data)-pos-w) {
			return n, pos, "record runs past the end of the segment"
		}
		if why := decodeRaftRecord(data[pos+w:pos+w+int(size)], start+uint64(n), nil); why != "" {
			return n, pos, why
		}
		n++
		pos += w + int(size)
	}
	return n, pos, ""
}

// tornRaftTail decides whether damage at pos in the last segment is a torn write (cut off) or
// corruption: it is torn when no valid record starts after it, or when a zero-filled sector
// lies between it and the next valid one (pages of the last, unsynced write that never reached
// the device; written pages may persist out of order).
func tornRaftTail(data []byte, pos int) bool {
	q := -1
	budget := 64 << 20 // bytes checksummed; when spent, assume a valid record (report corruption)
	for p := pos + 1; p < len(data) && q < 0; p++ {
		size, w := binary.Uvarint(data[p:])
		if w <= 0 || size < raftHeaderSize || size > uint64(len(data)-p-w) || data[p+w] != raftRecordKind {
			continue
		}
		rec := data[p+w : p+w+int(size)]
		if budget -= len(rec); budget < 0 || binary.LittleEndian.Uint32(rec[1:]) == raftRecordCRC(rec) {
			q = p
		}
	}
	if q < 0 {
		return true
	}
	for sec := (pos + raftSectorSize - 1) / raftSectorSize * raftSectorSize; sec+raftSectorSize <= q; sec += raftSectorSize {
		if isZero(data[sec : sec+raftSectorSize]) {
			return true
		}
	}
	return false
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func uvarintSize(x uint64) int64 {
	n := int64(1)
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func readAll(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err = io.ReadFull(f, buf)
	return buf, err
}

func truncateAndSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir fsyncs a folder so that created, renamed and removed entries are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ---- stable store

// stableStore is raft.StableStore in one small file (the current term and the last vote),
// written only when they change: the whole map goes to a temporary file, which is fsynced
// and renamed over the old one, and the folder is fsynced. Format: for each key, uvarint
// length, key, uvarint length, value; then the CRC-32C of all that, little endian.
type stableStore struct {
	path string
	mu   sync.Mutex
	kv   map[string][]byte
}

var errNotFound = errors.New("not found") // raft compares the text "not found"

func openStableStore(path string) (*stableStore, error) {
	s := &stableStore{path: path, kv: map[string][]byte{}}
	_ = os.Remove(path + ".tmp") // an interrupted write: the old file stands
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: raft stable store: %w", err)
	}
	if len(b) < 4 || crc32.Checksum(b[:len(b)-4], raftCRCTable) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: %s fails its checksum", errLogCorrupt, path)
	}
	b = b[:len(b)-4]
	for len(b) > 0 {
		var kv [2][]byte
		for i := range kv {
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return nil, fmt.Errorf("%w: %s is malformed", errLogCorrupt, path)
			}
			kv[i], b = b[n:n+int(l)], b[n+int(l):]
		}
		s.kv[string(kv[0])] = slices.Clone(kv[1])
	}
	return s, nil
}

// Set stores val under key durably.
func (s *stableStore) Set(key, val []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.kv[string(key)]
	s.kv[string(key)] = slices.Clone(val)
	if err := s.writeLocked(); err != nil {
		if had {
			s.kv[string(key)] = old
		} else {
			delete(s.kv, string(key))
		}
		return err
	}
	return nil
}

// Get returns the value of key, or the error "not found" (as raft's own stores do).
func (s *stableStore) Get(key []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.kv[string(key)]
	if !ok {
		return nil, errNotFound
	}
	return slices.Clone(v), nil
}

// SetUint64 stores val under key durably.
func (s *stableStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value of key, or 0 and the error "not found".
func (s *stableStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("cluster: raft stable store: value of %q is not a uint64", key)
	}
	return binary.BigEndian.Uint64(v), nil
}

func (s *stableStore) writeLocked() error {
	keys := make([]string, 0, len(s.kv))
	for k := range s.kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(s.kv[k])))
		b = append(b, s.kv[k]...)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, raftCRCTable))
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("cluster: raft stable store: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(s.path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cluster: raft stable store: %w", err)
	}
	return nil
}
