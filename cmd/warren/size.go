package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the information units accepted after a byte count, as RabbitMQ accepts them in
// disk_free_limit.absolute and vm_memory_high_watermark.absolute: kB, MB, GB (and TB) are
// powers of 1000, KiB, MiB, GiB (and TiB) powers of 1024, in the spellings RabbitMQ takes.
var sizeUnits = map[string]int64{
	"kB": 1e3, "KB": 1e3, "kb": 1e3, "Kb": 1e3,
	"MB": 1e6, "mb": 1e6, "Mb": 1e6,
	"GB": 1e9, "gb": 1e9, "Gb": 1e9,
	"TB": 1e12, "tb": 1e12, "Tb": 1e12,
	"KiB": 1 << 10, "kiB": 1 << 10, "kib": 1 << 10, "KIB": 1 << 10, "Ki": 1 << 10,
	"MiB": 1 << 20, "mib": 1 << 20, "MIB": 1 << 20, "Mi": 1 << 20,
	"GiB": 1 << 30, "gib": 1 << 30, "GIB": 1 << 30, "Gi": 1 << 30,
	"TiB": 1 << 40, "tib": 1 << 40, "TIB": 1 << 40, "Ti": 1 << 40,
}

// errSizeSyntax describes what a size may look like.
var errSizeSyntax = errors.New("want a whole number of bytes, optionally followed by a unit: kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 50000000, 50MB or 1GiB")

// parseSize reads a byte count: an integer, optionally negative (for the settings where a
// negative value turns something off), optionally followed by an information unit (see
// sizeUnits; spaces between number and unit are allowed). The one-letter units k, M, G and T
// are refused: RabbitMQ 3.10 reads them as powers of 1024, its versions since early 2024 as
// powers of 1000.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	if strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+") {
		i = 1
	}
	j := i
	for j < len(t) && t[j] >= '0' && t[j] <= '9' {
		j++
	}
	if j == i {
		return 0, fmt.Errorf("size %q: %w", s, errSizeSyntax)
	}
	n, err := strconv.ParseInt(t[:j], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	unit := strings.TrimSpace(t[j:])
	if unit == "" {
		return n, nil
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		switch unit {
		case "k", "K", "m", "M", "g", "G", "t", "T":
			return 0, fmt.Errorf("size %q: the unit %q is ambiguous (RabbitMQ 3.10 reads it as %siB, its later versions as %sB): write one of those",
				s, unit, strings.ToUpper(unit), strings.ToUpper(unit))
		}
		return 0, fmt.Errorf("size %q: unknown unit %q: %w", s, unit, errSizeSyntax)
	}
	if n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// sizeInt is the integer types of byte-size settings.
type sizeInt interface{ ~int | ~int64 | ~uint32 }

// sizeFlag is a flag.Value for a byte size (parseSize) stored in *p, refusing values outside
// min..max.
type sizeFlag[T sizeInt] struct {
	p        *T
	min, max int64
}

func newSizeFlag[T sizeInt](p *T, min, max int64) *sizeFlag[T] {
	return &sizeFlag[T]{p: p, min: min, max: max}
}

func (f *sizeFlag[T]) String() string {
	if f == nil || f.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*f.p), 10)
}

func (f *sizeFlag[T]) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if n < f.min || n > f.max {
		return fmt.Errorf("size %q: want %d to %d bytes", s, f.min, f.max)
	}
	*f.p = T(n)
	return nil
}

// Get implements flag.Getter.
func (f *sizeFlag[T]) Get() any { return *f.p }

// uint16Flag is a flag.Value for a uint16 setting (channel-max, heartbeat), refusing values
// that do not fit instead of wrapping them.
type uint16Flag struct{ p *uint16 }

func (f uint16Flag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*f.p), 10)
}

func (f uint16Flag) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return fmt.Errorf("%q: want a whole number from 0 to 65535", s)
	}
	*f.p = uint16(n)
	return nil
}

// Get implements flag.Getter.
func (f uint16Flag) Get() any { return *f.p }
