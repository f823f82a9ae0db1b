#!/usr/bin/env bash
# Checks that `make unit` (the packages given as arguments, the Makefile's PKGS) runs the tests
# of every package that has any, except conformance (which `make conformance` runs).
set -euo pipefail
want=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./... | grep -v '/conformance$' | sort)
have=$(go list "$@" | sort)
missing=$(comm -23 <(echo "$want") <(echo "$have"))
if [[ -n $missing ]]; then
  echo "make unit leaves out packages with tests:"; echo "$missing"; exit 1
fi
