package wal

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// segInfo mirrors one tidwall/wal segment file: the offset of its first record and its size.
type segInfo struct {
	start uint64
	size  int64
}

// segmentName is tidwall/wal's file name for a segment starting at index start.
func segmentName(start uint64) string { return fmt.Sprintf("%020d", start) }

// listSegments returns the segment files of a log folder in order. leftovers reports .START or .END
// files, which tidwall/wal leaves when it crashes inside a truncation and cleans up on Open.
// With cleanup, stale .TEMP files from such a crash are removed.
func listSegments(dir string, cleanup bool) (segs []segInfo, leftovers bool, err error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || len(name) < 20 {
			continue
		}
		idx, perr := strconv.ParseUint(name[:20], 10, 64)
		if perr != nil || idx == 0 {
			continue
		}
		switch rest := name[20:]; {
		case rest == "":
			fi, err := de.Info()
			if err != nil {
				return nil, false, err
			}
			segs = append(segs, segInfo{start: idx, size: fi.Size()})
		case rest == ".START" || rest == ".END":
			leftovers = true
		case cleanup && strings.HasSuffix(rest, ".TEMP"):
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, false, err
			}
		}
	}
	slices.SortFunc(segs, func(a, b segInfo) int {
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

// readFileInto reads a whole file, reusing buf.
func readFileInto(path string, buf []byte) ([]byte, error) {
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
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf, err
	}
	return buf, nil
}

// scanSegment walks the entries of a segment file (tidwall/wal's binary framing: uvarint length,
// then the entry) and checks each record envelope. fn runs for every valid record, i counting from
// 0. It stops at the first invalid entry and returns the number of valid records, the byte
// position where they end, and why it stopped ("" when it reached the end of data).
func scanSegment(data []byte, fn func(i int, k Kind, body []byte)) (n, pos int, reason string) {
	for pos < len(data) {
		size, w := binary.Uvarint(data[pos:])
		if w <= 0 {
			return n, pos, "bad length"
		}
		if size > uint64(len(data)-pos-w) {
			return n, pos, "record runs past end of segment"
		}
		rec := data[pos+w : pos+w+int(size)]
		k, body, why := decodeRecord(rec)
		if why != "" {
			return n, pos, why
		}
		if fn != nil {
			fn(n, k, body)
		}
		n++
		pos += w + int(size)
	}
	return n, pos, ""
}

// resyncBudget bounds the bytes checksummed while looking for valid records behind damage in a
// tail segment. When it runs out, the search stops there, which errs towards reporting corruption.
const resyncBudget = 64 << 20

// nextValidRecord returns the position of the first valid record that starts in data after
// position from, or -1 if there is none.
func nextValidRecord(data []byte, from int) int {
	budget := resyncBudget
	for q := from + 1; q < len(data); q++ {
		size, w := binary.Uvarint(data[q:])
		if w <= 0 || size < headerSize || size > uint64(len(data)-q-w) {
			continue
		}
		if k := Kind(data[q+w]); k != KindData && k != KindRetire && k != KindDelivered {
			continue
		}
		if budget -= int(size); budget < 0 {
			return q
		}
		if _, _, why := decodeRecord(data[q+w : q+w+int(size)]); why == "" {
			return q
		}
	}
	return -1
}

// sectorSize is the granularity of the zero-filled holes that a crash leaves where written pages
// never reached the device.
const sectorSize = 512

// hasZeroSector reports whether data[from:to] contains a whole, aligned, zero-filled sector.
func hasZeroSector(data []byte, from, to int) bool {
	for s := (from + sectorSize - 1) / sectorSize * sectorSize; s+sectorSize <= to; s += sectorSize {
		zero := true
		for _, b := range data[s : s+sectorSize] {
			if b != 0 {
				zero = false
				break
			}
		}
		if zero {
			return true
		}
	}
	return false
}

// tornAt decides whether damage found at pos in a tail segment is a torn write, which is cut off,
// or corruption. Nothing valid after it: a torn or garbage end. Valid records after it but a
// zero-filled sector in between: pages of the last, unsynced writes that never reached the device
// (written pages can persist out of order), so nothing from pos on was ever acknowledged (as in
// etcd's torn-entry check). Anything else, such as a flipped bit before valid records, is
// corruption.
func tornAt(data []byte, pos int) bool {
	q := nextValidRecord(data, pos)
	return q < 0 || hasZeroSector(data, pos, q)
}

func uvarintLen(x uint64) int64 {
	n := int64(1)
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// syncDir fsyncs a directory so that created, renamed or removed entries are durable.
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
