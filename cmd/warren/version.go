package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/warrenmq/warren/broker"
)

// wantsVersion reports whether the command line asks for the version (-version or --version
// before any "--"); nothing else is read then, so a bad setting does not hide it.
func wantsVersion(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-version", "--version", "-version=true", "--version=true":
			return true
		}
	}
	return false
}

// versionText is what --version prints: Warren's version, the RabbitMQ version it answers as,
// the Go version and platform, and the source revision when the binary was built from a
// checkout.
func versionText() string {
	s := fmt.Sprintf("warren %s (answers as RabbitMQ %s; %s %s/%s", broker.Version, broker.CompatVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				dirty = kv.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			s += ", commit " + rev
			if dirty {
				s += "+changes"
			}
		}
	}
	return s + ")"
}
