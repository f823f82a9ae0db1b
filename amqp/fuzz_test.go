package amqp

import (
	"bytes"
	"testing"
	"testing/iotest"
)

func seedFrames() [][]byte {
	props := (&Properties{ContentType: "text/plain", Headers: Table{"a": int32(1), "l": []any{"x"}}, DeliveryMode: 2}).AppendTo(nil)
	var seeds [][]byte
	seeds = append(seeds, AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "amq.direct", RoutingKey: "k"}))
	seeds = append(seeds, AppendContent(nil, 1, props, []byte("hello"), 4096))
	seeds = append(seeds, AppendMethodFrame(nil, 0, &ConnectionStartOk{ClientProperties: Table{"product": "x"}, Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"}))
	seeds = append(seeds, AppendHeartbeat(nil))
	seeds = append(seeds, AppendMethodFrame(nil, 2, &QueueDeclare{Queue: "q", Arguments: Table{"x-message-ttl": int32(100)}}))
	return seeds
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader (also one byte at a time) and decodes
// whatever frames come out as methods, content headers and properties. Nothing may panic.
func FuzzReadFrame(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, oneByte := range []bool{false, true} {
			var r interface{ Read([]byte) (int, error) } = bytes.NewReader(data)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			fr := NewFrameReader(r, 0)
			fr.SetMaxFrameSize(1 << 16)
			var d Decoder
			for range 64 {
				fr, err := fr.ReadFrame()
				if err != nil {
					break
				}
				switch fr.Type {
				case FrameMethod:
					if m, err := d.Decode(fr.Payload); err == nil {
						m.AppendTo(nil)
					}
				case FrameHeader:
					if h, err := ParseContentHeader(fr.Payload); err == nil {
						if _, err := DecodeProperties(h.RawProps); err != nil {
							t.Fatalf("ScanProperties accepted what DecodeProperties refuses: %v", err)
						}
					}
				}
			}
		}
	})
}

// FuzzTable decodes arbitrary bytes as a field table; what decodes must re-encode and decode
// to an equal table, and the allocation-free validator must agree with the decoder.
func FuzzTable(f *testing.F) {
	f.Add(AppendTable(nil, Table{"a": "b", "n": int64(1), "t": Table{"x": []any{uint8(1), nil}}}))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl, _, err := ReadTable(data)
		_, serr := skipTable(data, 0)
		if (err == nil) != (serr == nil) {
			t.Fatalf("ReadTable err %v, skipTable err %v", err, serr)
		}
		if err != nil {
			return
		}
		enc := AppendTable(nil, tbl)
		tbl2, _, err := ReadTable(enc)
		if err != nil {
			t.Fatalf("re-encoded table does not decode: %v", err)
		}
		if !bytes.Equal(AppendTable(nil, tbl2), enc) {
			t.Fatal("table encoding not stable")
		}
	})
}

// FuzzMethodRoundTrip decodes arbitrary method payloads; a decoded method must re-encode and
// decode to the same encoding.
func FuzzMethodRoundTrip(f *testing.F) {
	for _, m := range allMethods() {
		f.Add(m.AppendTo(nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMethod(data)
		if err != nil {
			return
		}
		enc := m.AppendTo(nil)
		m2, err := DecodeMethod(enc)
		if err != nil {
			t.Fatalf("%s: re-encoded method does not decode: %v", m.Name(), err)
		}
		if !bytes.Equal(m2.AppendTo(nil), enc) {
			t.Fatalf("%s: encoding not stable", m.Name())
		}
	})
}
