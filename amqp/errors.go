package amqp

import (
	"errors"
	"fmt"
	"strconv"
)

// ReplyCode is an AMQP reply code (spec section 1.4). The constants are generated.
type ReplyCode uint16

// Scope says whether an error closes the channel or the whole connection.
type Scope uint8

const (
	// ScopeChannel errors close the channel (channel.close).
	ScopeChannel Scope = iota
	// ScopeConnection errors close the connection (connection.close).
	ScopeConnection
)

// Error is a protocol failure: the reply code and text sent to the peer in channel.close or
// connection.close, and the class and method that caused it (0 when not known yet; the session
// dispatcher stamps them).
type Error struct {
	Code     ReplyCode
	Text     string // full reply text, e.g. "NOT_FOUND - no queue 'q' in vhost '/'"
	ClassID  uint16
	MethodID uint16
	Scope    Scope
	cause    error // for errors.Is: ErrMalformedUTF8
}

func (e *Error) Error() string { return e.Text }

// Unwrap returns the sentinel behind some decoding errors (ErrMalformedUTF8), or nil.
func (e *Error) Unwrap() error { return e.cause }

// ErrMalformedUTF8 is behind the 501 FRAME_ERROR "Malformed UTF-8 in shortstr" that decoding
// a method returns (check with errors.Is): RabbitMQ answers it with connection.close even
// during the handshake (connection.open), where other malformed frames just end the socket.
var ErrMalformedUTF8 = errors.New("amqp: malformed UTF-8 in shortstr")

// ChannelErr returns a channel-scoped error (unless code is a hard error, which always closes
// the connection) with RabbitMQ's text shape: "CODE_NAME - message".
func ChannelErr(code ReplyCode, format string, args ...any) error {
	s := ScopeChannel
	if code.IsHard() {
		s = ScopeConnection
	}
	return &Error{Code: code, Text: code.String() + " - " + fmt.Sprintf(format, args...), Scope: s}
}

// ConnErr returns a connection-scoped error with RabbitMQ's text shape.
func ConnErr(code ReplyCode, format string, args ...any) error {
	return &Error{Code: code, Text: code.String() + " - " + fmt.Sprintf(format, args...), Scope: ScopeConnection}
}

func itoa(i int) string { return strconv.Itoa(i) }

// frameErr builds the error the decoders return: RabbitMQ answers malformed frames, arguments,
// tables and properties alike with 501 FRAME_ERROR.
func frameErr(format string, args ...any) error { return ConnErr(FrameError, format, args...) }

// ReplyText returns s as a close method's reply-text: a short string, so at most 255 bytes.
// A longer text is cut to 252 bytes followed by "...", as RabbitMQ does.
func ReplyText(s string) string {
	if len(s) <= 255 {
		return s
	}
	return s[:252] + "..."
}
