package amqp

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"
)

// Table is an AMQP field table. Values use these Go types, one per RabbitMQ type tag (the 0-9-1
// errata as RabbitMQ implements it, not the spec XML's list):
//
//	't' bool     'b' int8    'B' uint8   's' int16   'u' uint16   'I' int32   'i' uint32
//	'l' int64    'f' float32 'd' float64 'D' Decimal 'S' string   'A' []any   'T' time.Time
//	'F' Table    'x' []byte  'V' nil
//
// Encoding also accepts int (as 'l') and map[string]any (as 'F'). Decoding then encoding a
// table gives back the same bytes, except that key order follows the map (sorted on encode).
type Table map[string]any

// Decimal is the 'D' value: Value × 10^-Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// maxTableDepth is how many tables and arrays may nest inside a field table (method
// arguments, a message's headers). Deeper input is refused with 501 FRAME_ERROR.
// RabbitMQ has no limit but the frame size (10,000 levels fit in a 128 KiB frame); decoding
// here is recursive, at about 650 bytes of goroutine stack per level, and frame_max can be
// raised, so a limit stays: 1,000 levels (some 650 KiB of stack at worst, per connection
// reader) is far beyond what applications nest (amqp091-go, for one, reads only 32).
const maxTableDepth = 1000

// ReadTable decodes a field table (4-byte length, then entries) from the front of b and
// returns it with the bytes that follow. Strings and byte arrays are copied.
func ReadTable(b []byte) (Table, []byte, error) {
	return readTable(b, 0)
}

// ReadTableWrapping is ReadTable for a table that wraps client tables up to levels deep (a
// metadata record holding a declare's arguments): each of those may nest as deep as a table
// read by ReadTable.
func ReadTableWrapping(b []byte, levels int) (Table, []byte, error) {
	return readTable(b, -levels)
}

func readTable(b []byte, depth int) (Table, []byte, error) {
	if depth > maxTableDepth {
		return nil, nil, frameErr("field table nested too deeply")
	}
	if len(b) < 4 {
		return nil, nil, frameErr("truncated field table length")
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(len(b)-4) < uint64(n) {
		return nil, nil, frameErr("field table length %d exceeds frame", n)
	}
	body, rest := b[4:4+n], b[4+n:]
	if len(body) == 0 {
		return Table{}, rest, nil
	}
	t := make(Table)
	for len(body) > 0 {
		kl := int(body[0])
		if len(body) < 1+kl+1 {
			return nil, nil, frameErr("truncated field table key")
		}
		key := string(body[1 : 1+kl])
		body = body[1+kl:]
		v, r, err := readValue(body, depth)
		if err != nil {
			return nil, nil, err
		}
		t[key] = v
		body = r
	}
	return t, rest, nil
}

func readValue(b []byte, depth int) (any, []byte, error) {
	if len(b) < 1 {
		return nil, nil, frameErr("truncated field value")
	}
	tag, b := b[0], b[1:]
	need := func(n int) bool { return len(b) >= n }
	switch tag {
	case 't':
		if need(1) {
			return b[0] != 0, b[1:], nil
		}
	case 'b':
		if need(1) {
			return int8(b[0]), b[1:], nil
		}
	case 'B':
		if need(1) {
			return b[0], b[1:], nil
		}
	case 's':
		if need(2) {
			return int16(binary.BigEndian.Uint16(b)), b[2:], nil
		}
	case 'u':
		if need(2) {
			return binary.BigEndian.Uint16(b), b[2:], nil
		}
	case 'I':
		if need(4) {
			return int32(binary.BigEndian.Uint32(b)), b[4:], nil
		}
	case 'i':
		if need(4) {
			return binary.BigEndian.Uint32(b), b[4:], nil
		}
	case 'l':
		if need(8) {
			return int64(binary.BigEndian.Uint64(b)), b[8:], nil
		}
	case 'f':
		if need(4) {
			return math.Float32frombits(binary.BigEndian.Uint32(b)), b[4:], nil
		}
	case 'd':
		if need(8) {
			return math.Float64frombits(binary.BigEndian.Uint64(b)), b[8:], nil
		}
	case 'D':
		if need(5) {
			return Decimal{Scale: b[0], Value: int32(binary.BigEndian.Uint32(b[1:]))}, b[5:], nil
		}
	case 'T':
		if need(8) {
			return time.Unix(int64(binary.BigEndian.Uint64(b)), 0).UTC(), b[8:], nil
		}
	case 'V':
		return nil, b, nil
	case 'S', 'x':
		if need(4) {
			n := binary.BigEndian.Uint32(b)
			if uint64(len(b)-4) >= uint64(n) {
				if tag == 'S' {
					return string(b[4 : 4+n]), b[4+n:], nil
				}
				return append([]byte{}, b[4:4+n]...), b[4+n:], nil
			}
		}
	case 'F':
		return readTable(b, depth+1)
	case 'A':
		if need(4) {
			n := binary.BigEndian.Uint32(b)
			if uint64(len(b)-4) >= uint64(n) {
				body, rest := b[4:4+n], b[4+n:]
				if depth+1 > maxTableDepth {
					return nil, nil, frameErr("field array nested too deeply")
				}
				arr := []any{}
				for len(body) > 0 {
					v, r, err := readValue(body, depth+1)
					if err != nil {
						return nil, nil, err
					}
					arr = append(arr, v)
					body = r
				}
				return arr, rest, nil
			}
		}
	default:
		return nil, nil, frameErr("unknown field table type '%c' (0x%02x)", tag, tag)
	}
	return nil, nil, frameErr("truncated field value of type '%c'", tag)
}

// AppendTable appends t encoded as a field table (length-prefixed) to b. Keys are written in
// sorted order so that the encoding is deterministic. Values of unsupported Go types are
// written as void ('V'); ValidTable reports them beforehand.
func AppendTable(b []byte, t Table) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	if len(t) > 0 {
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b = appendShortstr(b, k)
			b = appendValue(b, t[k])
		}
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case bool:
		if v {
			return append(b, 't', 1)
		}
		return append(b, 't', 0)
	case int8:
		return append(b, 'b', byte(v))
	case uint8:
		return append(b, 'B', v)
	case int16:
		return appendUint16(append(b, 's'), uint16(v))
	case uint16:
		return appendUint16(append(b, 'u'), v)
	case int32:
		return appendUint32(append(b, 'I'), uint32(v))
	case uint32:
		return appendUint32(append(b, 'i'), v)
	case int64:
		return appendUint64(append(b, 'l'), uint64(v))
	case int:
		return appendUint64(append(b, 'l'), uint64(v))
	case float32:
		return appendUint32(append(b, 'f'), math.Float32bits(v))
	case float64:
		return appendUint64(append(b, 'd'), math.Float64bits(v))
	case Decimal:
		return appendUint32(append(b, 'D', v.Scale), uint32(v.Value))
	case string:
		return appendLongstr(append(b, 'S'), v)
	case []byte:
		b = appendUint32(append(b, 'x'), uint32(len(v)))
		return append(b, v...)
	case time.Time:
		return appendUint64(append(b, 'T'), uint64(v.Unix()))
	case Table:
		return AppendTable(append(b, 'F'), v)
	case map[string]any:
		return AppendTable(append(b, 'F'), Table(v))
	case []any:
		b = append(b, 'A')
		start := len(b)
		b = append(b, 0, 0, 0, 0)
		for _, e := range v {
			b = appendValue(b, e)
		}
		binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
		return b
	default:
		return append(b, 'V')
	}
}

// IntValue reads an integer field value of any width ('b' 'B' 's' 'u' 'I' 'i' 'l', and Go int).
func IntValue(v any) (int64, bool) {
	switch v := v.(type) {
	case int8:
		return int64(v), true
	case uint8:
		return int64(v), true
	case int16:
		return int64(v), true
	case uint16:
		return int64(v), true
	case int32:
		return int64(v), true
	case uint32:
		return int64(v), true
	case int64:
		return v, true
	case int:
		return int64(v), true
	}
	return 0, false
}

// TypeName names a field value's type as RabbitMQ does in its error texts (longstr, long,
// signedint, byte, ...).
func TypeName(v any) string {
	switch v.(type) {
	case string:
		return "longstr"
	case []byte:
		return "binary"
	case bool:
		return "bool"
	case int8:
		return "byte"
	case uint8:
		return "unsignedbyte"
	case int16:
		return "short"
	case uint16:
		return "unsignedshort"
	case int32, int:
		return "signedint"
	case uint32:
		return "unsignedint"
	case int64:
		return "long"
	case float32:
		return "float"
	case float64:
		return "double"
	case Decimal:
		return "decimal"
	case time.Time:
		return "timestamp"
	case Table:
		return "table"
	case []any:
		return "array"
	case nil:
		return "void"
	}
	return fmt.Sprintf("%T", v)
}
