package amqp

import (
	"encoding/binary"
	"time"
)

// Property flag bits of the basic class (spec 4.2.6.1: the highest bit is the first property).
const (
	FlagContentType     uint16 = 1 << 15
	FlagContentEncoding uint16 = 1 << 14
	FlagHeaders         uint16 = 1 << 13
	FlagDeliveryMode    uint16 = 1 << 12
	FlagPriority        uint16 = 1 << 11
	FlagCorrelationID   uint16 = 1 << 10
	FlagReplyTo         uint16 = 1 << 9
	FlagExpiration      uint16 = 1 << 8
	FlagMessageID       uint16 = 1 << 7
	FlagTimestamp       uint16 = 1 << 6
	FlagType            uint16 = 1 << 5
	FlagUserID          uint16 = 1 << 4
	FlagAppID           uint16 = 1 << 3
	FlagClusterID       uint16 = 1 << 2
	flagContinuation    uint16 = 1
)

// Properties are the 14 basic content properties. Flags records which were present on the
// wire; AppendTo writes a property if its flag is set or its value is non-zero.
type Properties struct {
	Flags           uint16
	ContentType     string
	ContentEncoding string
	Headers         Table
	DeliveryMode    uint8
	Priority        uint8
	CorrelationID   string
	ReplyTo         string
	Expiration      string
	MessageID       string
	Timestamp       time.Time
	Type            string
	UserID          string
	AppID           string
	ClusterID       string
}

// ContentHeader is a parsed content header frame payload (spec 4.2.6). Properties aliases the
// frame payload: the raw property flags and list, ready to be written again unchanged.
type ContentHeader struct {
	ClassID  uint16
	Weight   uint16
	BodySize uint64
	RawProps []byte
}

// ParseContentHeader parses a content header payload without allocating. It checks that the
// property list is well formed (so RawProps can be forwarded to other clients as it is).
func ParseContentHeader(payload []byte) (ContentHeader, error) {
	if len(payload) < 14 {
		return ContentHeader{}, frameErr("content header too short (%d bytes)", len(payload))
	}
	h := ContentHeader{
		ClassID:  binary.BigEndian.Uint16(payload),
		Weight:   binary.BigEndian.Uint16(payload[2:]),
		BodySize: binary.BigEndian.Uint64(payload[4:]),
		RawProps: payload[12:],
	}
	if _, err := ScanProperties(h.RawProps); err != nil {
		return ContentHeader{}, err
	}
	return h, nil
}

// PropertySummary is what the broker needs from a message's properties on the hot path, read
// without allocating. The byte slices alias the raw properties.
type PropertySummary struct {
	Flags        uint16
	DeliveryMode uint8
	Priority     uint8
	Expiration   []byte
	UserID       []byte
	MessageID    []byte
	Headers      []byte // the encoded table including its length prefix; nil when absent
	Timestamp    int64
}

// Persistent reports delivery-mode 2.
func (s *PropertySummary) Persistent() bool { return s.DeliveryMode == 2 }

// ScanProperties validates raw basic properties (flag words then values) and returns the
// summary. It does not allocate.
func ScanProperties(raw []byte) (PropertySummary, error) {
	var s PropertySummary
	if len(raw) < 2 {
		return s, frameErr("truncated property flags")
	}
	flags := binary.BigEndian.Uint16(raw)
	b := raw[2:]
	for fw := flags; fw&flagContinuation != 0; {
		if len(b) < 2 {
			return s, frameErr("truncated property flags")
		}
		fw = binary.BigEndian.Uint16(b)
		b = b[2:]
	}
	s.Flags = flags
	var str []byte
	var err error
	shortstr := func() {
		if err != nil {
			return
		}
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			err = frameErr("truncated short string property")
			return
		}
		str = b[1 : 1+int(b[0])]
		b = b[1+int(b[0]):]
	}
	octet := func() uint8 {
		if err != nil {
			return 0
		}
		if len(b) < 1 {
			err = frameErr("truncated octet property")
			return 0
		}
		v := b[0]
		b = b[1:]
		return v
	}
	if flags&FlagContentType != 0 {
		shortstr()
	}
	if flags&FlagContentEncoding != 0 {
		shortstr()
	}
	if flags&FlagHeaders != 0 && err == nil {
		start := b
		var rest []byte
		rest, err = skipTable(b, 0)
		if err == nil {
			s.Headers = start[:len(start)-len(rest)]
			b = rest
		}
	}
	if flags&FlagDeliveryMode != 0 {
		s.DeliveryMode = octet()
	}
	if flags&FlagPriority != 0 {
		s.Priority = octet()
	}
	if flags&FlagCorrelationID != 0 {
		shortstr()
	}
	if flags&FlagReplyTo != 0 {
		shortstr()
	}
	if flags&FlagExpiration != 0 {
		shortstr()
		s.Expiration = str
	}
	if flags&FlagMessageID != 0 {
		shortstr()
		s.MessageID = str
	}
	if flags&FlagTimestamp != 0 && err == nil {
		if len(b) < 8 {
			err = frameErr("truncated timestamp property")
		} else {
			s.Timestamp = int64(binary.BigEndian.Uint64(b))
			b = b[8:]
		}
	}
	if flags&FlagType != 0 {
		shortstr()
	}
	if flags&FlagUserID != 0 {
		shortstr()
		s.UserID = str
	}
	if flags&FlagAppID != 0 {
		shortstr()
	}
	if flags&FlagClusterID != 0 {
		shortstr()
	}
	return s, err
}

// skipTable checks the structure of an encoded table at the front of b without allocating and
// returns the bytes after it.
func skipTable(b []byte, depth int) ([]byte, error) {
	if depth > maxTableDepth {
		return nil, frameErr("field table nested too deeply")
	}
	if len(b) < 4 {
		return nil, frameErr("truncated field table length")
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(len(b)-4) < uint64(n) {
		return nil, frameErr("field table length %d exceeds frame", n)
	}
	body, rest := b[4:4+n], b[4+n:]
	for len(body) > 0 {
		kl := int(body[0])
		if len(body) < 1+kl+1 {
			return nil, frameErr("truncated field table key")
		}
		var err error
		body, err = skipValue(body[1+kl:], depth)
		if err != nil {
			return nil, err
		}
	}
	return rest, nil
}

var fixedValueSize = [256]int8{'t': 1, 'b': 1, 'B': 1, 's': 2, 'u': 2, 'I': 4, 'i': 4, 'l': 8,
	'f': 4, 'd': 8, 'D': 5, 'T': 8, 'V': 0}

func skipValue(b []byte, depth int) ([]byte, error) {
	if len(b) < 1 {
		return nil, frameErr("truncated field value")
	}
	tag, b := b[0], b[1:]
	switch tag {
	case 'S', 'x':
		if len(b) < 4 {
			return nil, frameErr("truncated field value")
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return nil, frameErr("truncated field value")
		}
		return b[4+n:], nil
	case 'F':
		return skipTable(b, depth+1)
	case 'A':
		if len(b) < 4 {
			return nil, frameErr("truncated field array")
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return nil, frameErr("truncated field array")
		}
		body, rest := b[4:4+n], b[4+n:]
		if depth+1 > maxTableDepth {
			return nil, frameErr("field array nested too deeply")
		}
		for len(body) > 0 {
			var err error
			if body, err = skipValue(body, depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil
	case 't', 'b', 'B', 's', 'u', 'I', 'i', 'l', 'f', 'd', 'D', 'T', 'V':
		n := int(fixedValueSize[tag])
		if len(b) < n {
			return nil, frameErr("truncated field value of type '%c'", tag)
		}
		return b[n:], nil
	}
	return nil, frameErr("unknown field table type '%c' (0x%02x)", tag, tag)
}

// DecodeProperties fully decodes raw basic properties (allocating strings and tables).
func DecodeProperties(raw []byte) (Properties, error) {
	var p Properties
	if _, err := ScanProperties(raw); err != nil {
		return p, err
	}
	flags := binary.BigEndian.Uint16(raw)
	b := raw[2:]
	for fw := flags; fw&flagContinuation != 0; {
		fw = binary.BigEndian.Uint16(b)
		b = b[2:]
	}
	r := argReader{b: b}
	p.Flags = flags
	if flags&FlagContentType != 0 {
		p.ContentType = r.shortstr()
	}
	if flags&FlagContentEncoding != 0 {
		p.ContentEncoding = r.shortstr()
	}
	if flags&FlagHeaders != 0 {
		p.Headers = r.table()
	}
	if flags&FlagDeliveryMode != 0 {
		p.DeliveryMode = r.octet()
	}
	if flags&FlagPriority != 0 {
		p.Priority = r.octet()
	}
	if flags&FlagCorrelationID != 0 {
		p.CorrelationID = r.shortstr()
	}
	if flags&FlagReplyTo != 0 {
		p.ReplyTo = r.shortstr()
	}
	if flags&FlagExpiration != 0 {
		p.Expiration = r.shortstr()
	}
	if flags&FlagMessageID != 0 {
		p.MessageID = r.shortstr()
	}
	if flags&FlagTimestamp != 0 {
		p.Timestamp = r.timestamp()
	}
	if flags&FlagType != 0 {
		p.Type = r.shortstr()
	}
	if flags&FlagUserID != 0 {
		p.UserID = r.shortstr()
	}
	if flags&FlagAppID != 0 {
		p.AppID = r.shortstr()
	}
	if flags&FlagClusterID != 0 {
		p.ClusterID = r.shortstr()
	}
	return p, r.err
}

// AppendTo appends the encoded property flags and list (the raw properties) to b.
func (p *Properties) AppendTo(b []byte) []byte {
	f := p.Flags &^ flagContinuation
	set := func(cond bool, bit uint16) {
		if cond {
			f |= bit
		}
	}
	set(p.ContentType != "", FlagContentType)
	set(p.ContentEncoding != "", FlagContentEncoding)
	set(p.Headers != nil, FlagHeaders)
	set(p.DeliveryMode != 0, FlagDeliveryMode)
	set(p.Priority != 0, FlagPriority)
	set(p.CorrelationID != "", FlagCorrelationID)
	set(p.ReplyTo != "", FlagReplyTo)
	set(p.Expiration != "", FlagExpiration)
	set(p.MessageID != "", FlagMessageID)
	set(!p.Timestamp.IsZero(), FlagTimestamp)
	set(p.Type != "", FlagType)
	set(p.UserID != "", FlagUserID)
	set(p.AppID != "", FlagAppID)
	set(p.ClusterID != "", FlagClusterID)
	b = appendUint16(b, f)
	if f&FlagContentType != 0 {
		b = appendShortstr(b, p.ContentType)
	}
	if f&FlagContentEncoding != 0 {
		b = appendShortstr(b, p.ContentEncoding)
	}
	if f&FlagHeaders != 0 {
		b = AppendTable(b, p.Headers)
	}
	if f&FlagDeliveryMode != 0 {
		b = append(b, p.DeliveryMode)
	}
	if f&FlagPriority != 0 {
		b = append(b, p.Priority)
	}
	if f&FlagCorrelationID != 0 {
		b = appendShortstr(b, p.CorrelationID)
	}
	if f&FlagReplyTo != 0 {
		b = appendShortstr(b, p.ReplyTo)
	}
	if f&FlagExpiration != 0 {
		b = appendShortstr(b, p.Expiration)
	}
	if f&FlagMessageID != 0 {
		b = appendShortstr(b, p.MessageID)
	}
	if f&FlagTimestamp != 0 {
		var ts int64
		if !p.Timestamp.IsZero() {
			ts = p.Timestamp.Unix()
		}
		b = appendUint64(b, uint64(ts))
	}
	if f&FlagType != 0 {
		b = appendShortstr(b, p.Type)
	}
	if f&FlagUserID != 0 {
		b = appendShortstr(b, p.UserID)
	}
	if f&FlagAppID != 0 {
		b = appendShortstr(b, p.AppID)
	}
	if f&FlagClusterID != 0 {
		b = appendShortstr(b, p.ClusterID)
	}
	return b
}

// TableHasKey reports whether an encoded field table (with its length prefix, as
// PropertySummary.Headers) has the key at its top level, without decoding or allocating.
func TableHasKey(raw []byte, key string) bool {
	if len(raw) < 4 {
		return false
	}
	n := binary.BigEndian.Uint32(raw)
	if uint64(len(raw)-4) < uint64(n) {
		return false
	}
	body := raw[4 : 4+n]
	for len(body) > 0 {
		kl := int(body[0])
		if len(body) < 1+kl+1 {
			return false
		}
		if string(body[1:1+kl]) == key {
			return true
		}
		rest, err := skipValue(body[1+kl:], 0)
		if err != nil {
			return false
		}
		body = rest
	}
	return false
}
