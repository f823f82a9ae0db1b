#!/usr/bin/env bash
# Checks the dependency direction of STYLE.md: amqp and wal are leaves, broker/* imports only
# amqp and broker/*, cluster never imports broker, conformance imports none of our packages.
set -euo pipefail
mod=$(go list -m)
fail=0
check() { # package-pattern allowed-prefix...
  local pat=$1; shift
  while read -r pkg imports; do
    for imp in $imports; do
      [[ $imp == "$mod"* ]] || continue
      ok=0
      for allow in "$@"; do [[ $imp == "$mod/$allow"* ]] && ok=1; done
      if [[ $ok == 0 ]]; then echo "import direction: $pkg imports $imp"; fail=1; fi
    done
  done < <(go list -f '{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}}' "$pat" 2>/dev/null)
}
check ./amqp/... amqp/gen
check ./wal/... __none__
check ./crypt/... __none__
check ./broker/... amqp broker
check ./conformance/... __none__
[[ -d cluster ]] && check ./cluster/... wal cluster
exit $fail
