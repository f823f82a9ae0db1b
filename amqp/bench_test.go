package amqp

import (
	"bytes"
	"testing"
)

// BenchmarkDecodePublish reads basic.publish + content header + body frames from a stream and
// decodes them as the broker's reader does.
func BenchmarkDecodePublish(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run("size="+itoa(size), func(b *testing.B) {
			props := (&Properties{DeliveryMode: 2, ContentType: "application/octet-stream"}).AppendTo(nil)
			var msg []byte
			msg = AppendMethodFrame(msg, 1, &BasicPublish{Exchange: "amq.direct", RoutingKey: "bench.key"})
			msg = AppendContent(msg, 1, props, bytes.Repeat([]byte{'x'}, size), 131072)
			r := bytes.NewReader(msg)
			fr := NewFrameReader(r, 0)
			fr.SetMaxFrameSize(131072)
			var d Decoder
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				r.Reset(msg)
				f, _ := fr.ReadFrame()
				m, err := d.Decode(f.Payload)
				if err != nil || m.(*BasicPublish).RoutingKey != "bench.key" {
					b.Fatal(err)
				}
				f, _ = fr.ReadFrame()
				h, err := ParseContentHeader(f.Payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ScanProperties(h.RawProps); err != nil {
					b.Fatal(err)
				}
				f, _ = fr.ReadFrame()
				if len(f.Payload) != size {
					b.Fatal("body")
				}
			}
		})
	}
}

// BenchmarkEncodePublish encodes basic.publish + header + body into a reused buffer.
func BenchmarkEncodePublish(b *testing.B) {
	props := (&Properties{DeliveryMode: 2}).AppendTo(nil)
	body := bytes.Repeat([]byte{'x'}, 16)
	pub := &BasicPublish{Exchange: "amq.direct", RoutingKey: "bench.key"}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMethodFrame(buf[:0], 1, pub)
		buf = AppendContent(buf, 1, props, body, 131072)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkEncodeDeliver encodes basic.deliver + header + body as the broker does per delivery.
func BenchmarkEncodeDeliver(b *testing.B) {
	props := (&Properties{DeliveryMode: 2}).AppendTo(nil)
	body := bytes.Repeat([]byte{'x'}, 16)
	d := &BasicDeliver{ConsumerTag: "amq.ctag-abcdefghijklmnop", Exchange: "amq.direct", RoutingKey: "bench.key"}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		d.DeliveryTag++
		buf = AppendMethodFrame(buf[:0], 1, d)
		buf = AppendContent(buf, 1, props, body, 131072)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkDecodeDeliver decodes basic.deliver as a client would.
func BenchmarkDecodeDeliver(b *testing.B) {
	payload := (&BasicDeliver{ConsumerTag: "amq.ctag-abcdefghijklmnop", DeliveryTag: 42, Exchange: "amq.direct", RoutingKey: "bench.key"}).AppendTo(nil)
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(payload); err != nil {
			b.Fatal(err)
		}
	}
}
