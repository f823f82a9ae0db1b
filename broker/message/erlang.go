package message

import (
	"strconv"
	"strings"
)

// RabbitMQ words some refusals with an Erlang term printed by io_lib's ~p, which breaks a
// term that does not fit in the line. These helpers print the few terms Warren sends that
// way, so the reply texts match RabbitMQ's byte for byte.

// erlangLineEnd is the last column ~p fills on a line before it breaks a term (its default
// line length is 80; RabbitMQ 3.10's texts keep a flat term only while it ends at column 78).
const erlangLineEnd = 78

// erlangColumn is the column after text, as io_lib_format counts it: a newline restarts at 0,
// a tab moves to the next multiple of 8, any other byte is one column (latin-1).
func erlangColumn(text string) int {
	col := 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '\n':
			col = 0
		case '\t':
			col = (col + 8) / 8 * 8
		default:
			col++
		}
	}
	return col
}

// erlangPair prints the tuple {tag,value} after prefix, as ~p does: flat when it ends by
// column 78, else broken after the tag with value indented under it. value is already printed
// (a single-line term).
func erlangPair(prefix, tag, value string) string {
	col := erlangColumn(prefix)
	if col+len(tag)+len(value)+3 <= erlangLineEnd {
		return prefix + "{" + tag + "," + value + "}"
	}
	return prefix + "{" + tag + ",\n" + strings.Repeat(" ", col+1) + value + "}"
}

// erlangInteger prints the decimal integer written as sign and digits (digits may be longer
// than 64 bits, and have leading zeros, as string:to_integer accepts them).
func erlangInteger(negative bool, digits string) string {
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0"
	}
	if negative {
		return "-" + digits
	}
	return digits
}

// erlangList prints the bytes of s as ~p prints an Erlang list of latin-1 characters: a quoted
// string when every character is printable, else a list of integers.
func erlangList(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 32 && c <= 126 || c >= 160 || strings.IndexByte("\n\r\t\v\b\f\x1b", c) >= 0) {
			b := []byte{'['}
			for j := 0; j < len(s); j++ {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendInt(b, int64(s[j]), 10)
			}
			return string(append(b, ']'))
		}
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\v':
			b.WriteString(`\v`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\x1b':
			b.WriteString(`\e`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
