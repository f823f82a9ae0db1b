package main

import (
	"strings"
	"testing"

	"github.com/warrenmq/warren/broker"
)

func TestVersion_FlagWinsOverEverythingElse(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--bogus-flag", "--version"}, {"--data-dir", "/nonexistent/x", "--version=true"}} {
		if !wantsVersion(args) {
			t.Errorf("%v: not a version request", args)
		}
	}
	for _, args := range [][]string{nil, {"--version=false"}, {"--", "--version"}, {"--node-name", "x"}} {
		if wantsVersion(args) {
			t.Errorf("%v: taken as a version request", args)
		}
	}
	// run answers without reading the rest: a bad flag alongside does not matter.
	if err := run([]string{"--bogus-flag", "--version"}); err != nil {
		t.Fatal(err)
	}
	if v := versionText(); !strings.HasPrefix(v, "warren "+broker.Version+" ") || !strings.Contains(v, broker.CompatVersion) {
		t.Fatalf("version text %q", v)
	}
}
