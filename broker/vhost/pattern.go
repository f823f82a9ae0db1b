package vhost

import (
	"fmt"
	"regexp"

	"github.com/dlclark/regexp2/v2"
)

// Pattern is a regular expression as RabbitMQ takes them in policies and permissions: Erlang's
// re, which is PCRE. Go's RE2 compiles the patterns it accepts (nearly all in practice, and in
// linear time); a pattern RE2 refuses, such as a look-ahead (RabbitMQ's common "^(?!amq\.).*"),
// falls back to a backtracking engine with PCRE's syntax (github.com/dlclark/regexp2), used
// only for such patterns. Matching is unanchored, as Erlang's re:run.
type Pattern struct {
	expr string
	re   *regexp.Regexp
	re2  *regexp2.Regexp
}

// CompilePattern compiles expr, or returns why neither engine accepts it.
func CompilePattern(expr string) (*Pattern, error) {
	re, err := regexp.Compile(expr)
	if err == nil {
		return &Pattern{expr: expr, re: re}, nil
	}
	re2, err2 := regexp2.Compile(expr, regexp2.None)
	if err2 != nil {
		return nil, fmt.Errorf("%v", err) // RE2's message names the offending part
	}
	return &Pattern{expr: expr, re2: re2}, nil
}

// MatchString reports whether s contains a match. A backtracking match that exceeds the
// engine's stack limit counts as no match.
func (p *Pattern) MatchString(s string) bool {
	if p.re != nil {
		return p.re.MatchString(s)
	}
	ok, err := p.re2.MatchString(s)
	return ok && err == nil
}

// String returns the expression.
func (p *Pattern) String() string { return p.expr }
