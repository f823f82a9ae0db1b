package amqp

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestFrameReader_ReadsFramesAcrossSmallReads(t *testing.T) {
	var stream []byte
	stream = AppendMethodFrame(stream, 1, &BasicPublish{Exchange: "x", RoutingKey: "k"})
	body := bytes.Repeat([]byte("abcdefgh"), 3000) // 24000 bytes
	stream = AppendContent(stream, 1, (&Properties{DeliveryMode: 2}).AppendTo(nil), body, 4096)
	stream = AppendHeartbeat(stream)
	fr := NewFrameReader(iotest.OneByteReader(bytes.NewReader(stream)), 0)
	fr.SetMaxFrameSize(4096)
	f, err := fr.ReadFrame()
	if err != nil || f.Type != FrameMethod || f.Channel != 1 {
		t.Fatalf("method frame %+v %v", f, err)
	}
	m, err := DecodeMethod(f.Payload)
	if err != nil || m.(*BasicPublish).RoutingKey != "k" {
		t.Fatalf("%v %v", m, err)
	}
	f, err = fr.ReadFrame()
	if err != nil || f.Type != FrameHeader {
		t.Fatalf("header frame %+v %v", f, err)
	}
	var got []byte
	frames := 0
	for len(got) < len(body) {
		f, err = fr.ReadFrame()
		if err != nil || f.Type != FrameBody {
			t.Fatalf("body frame %+v %v", f, err)
		}
		if len(f.Payload)+8 > 4096 {
			t.Fatalf("body frame of %d bytes exceeds frame_max", len(f.Payload)+8)
		}
		got = append(got, f.Payload...)
		frames++
	}
	if !bytes.Equal(got, body) || frames != 6 {
		t.Fatalf("body mismatch or %d frames", frames)
	}
	f, err = fr.ReadFrame()
	if err != nil || f.Type != FrameHeartbeat || len(f.Payload) != 0 {
		t.Fatalf("heartbeat %+v %v", f, err)
	}
	if _, err = fr.ReadFrame(); err != io.EOF {
		t.Fatalf("end of stream: %v, want io.EOF", err)
	}
}

func TestFrameReader_Errors(t *testing.T) {
	good := AppendMethodFrame(nil, 0, &ConnectionCloseOk{})
	badEnd := append([]byte{}, good...)
	badEnd[len(badEnd)-1] = 0
	oversize := []byte{FrameBody, 0, 1, 0, 0, 0x20, 0} // 8192-byte payload announced
	unknownType := []byte{9, 0, 0, 0, 0, 0, 0, FrameEnd}
	cases := []struct {
		name string
		in   []byte
		code ReplyCode
		err  error
	}{
		{"bad frame end", badEnd, FrameError, nil},
		{"frame over frame_max", oversize, FrameError, nil},
		{"unknown frame type", unknownType, FrameError, nil},
		{"truncated header", good[:5], 0, io.ErrUnexpectedEOF},
		{"truncated payload", good[:len(good)-2], 0, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		fr := NewFrameReader(bytes.NewReader(c.in), 0)
		_, err := fr.ReadFrame()
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: %v, want %v", c.name, err, c.err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != c.code || e.Scope != ScopeConnection {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
}

func TestFrameReader_GrowsForLargeFrameMax(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 200000)
	stream := AppendBody(nil, 5, body, 0)
	fr := NewFrameReader(bytes.NewReader(stream), 0)
	fr.SetMaxFrameSize(0)
	f, err := fr.ReadFrame()
	if err != nil || len(f.Payload) != len(body) {
		t.Fatalf("%v len %d", err, len(f.Payload))
	}
}

func TestFrameReader_ProtocolHeader(t *testing.T) {
	fr := NewFrameReader(bytes.NewReader(append(append([]byte{}, ProtocolHeader...), AppendHeartbeat(nil)...)), 0)
	var h [8]byte
	if err := fr.ReadProtocolHeader(&h); err != nil || !bytes.Equal(h[:], ProtocolHeader) {
		t.Fatalf("%v %q", err, h)
	}
	if f, err := fr.ReadFrame(); err != nil || f.Type != FrameHeartbeat {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestFrameReader_ZeroAllocs(t *testing.T) {
	frame := AppendMethodFrame(nil, 1, &BasicAck{DeliveryTag: 9})
	r := bytes.NewReader(frame)
	fr := NewFrameReader(r, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Reset(frame)
		if _, err := fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ReadFrame allocates %.1f", allocs)
	}
}

func TestSpeaksProtocol(t *testing.T) {
	for h, want := range map[string]bool{
		"AMQP\x00\x00\x09\x01": true,  // 0-9-1
		"AMQP\x01\x01\x00\x09": true,  // 0-9, spoken as 0-9-1 (RabbitMQ)
		"AMQP\x01\x01\x08\x00": false, // 0-8 (RabbitMQ: its 0-8 framing)
		"AMQP\x01\x01\x09\x01": false, // 0-8 as py-amqplib sends it
		"AMQP\x00\x00\x09\x00": false,
		"AMQP\x01\x01\x00\x0a": false, // 0-10
		"AMQP\x00\x01\x00\x00": false, // 1.0
		"GET / HT":             false,
	} {
		if got := SpeaksProtocol([]byte(h)); got != want {
			t.Errorf("%q: %v, want %v", h, got, want)
		}
	}
}
