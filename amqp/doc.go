// Package amqp is Warren's AMQP 0-9-1 wire codec: frames, methods, field tables and content
// properties. It knows nothing of sockets or broker state: bytes in, typed values out, and back.
//
// The method structs, class and method ids and reply codes in spec_gen.go are generated from
// gen/amqp0-9-1.extended.xml (RabbitMQ's extended 0-9-1 spec) and gen/extensions.xml by
// `go generate`. Field tables use RabbitMQ's type tags (the 0-9-1 errata), not the XML's.
//
// Reading never panics on bad input: errors are *Error values carrying the reply code that the
// broker sends (501 FRAME_ERROR for malformed frames, arguments, tables and properties, as RabbitMQ;
// 505 UNEXPECTED_FRAME and others from the session).
//
// Typical use on a connection's reader goroutine:
//
//	fr := amqp.NewFrameReader(conn, amqp.FrameMinSize)
//	var dec amqp.Decoder
//	for {
//		f, err := fr.ReadFrame() // f.Payload is valid until the next ReadFrame
//		if err != nil { ... }
//		if f.Type == amqp.FrameMethod {
//			m, err := dec.Decode(f.Payload) // hot methods are reused: valid until the next Decode
//			...
//		}
//	}
//
// and to write:
//
//	out = amqp.AppendMethodFrame(out, channel, &amqp.BasicDeliver{...})
//	out = amqp.AppendContent(out, channel, rawProperties, body, frameMax)
package amqp

//go:generate go run ./gen -spec gen/amqp0-9-1.extended.xml -ext gen/extensions.xml -out spec_gen.go
