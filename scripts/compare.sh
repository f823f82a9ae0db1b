#!/usr/bin/env bash
# Runs the warren-perf scenarios of the performance issues against Warren and against a local
# RabbitMQ, alternating brokers per scenario, and prints one table row per scenario with both
# figures and the ratio. Both brokers must share the machine (the ratio is what counts: the
# load tool shares the cores with the broker).
#
#   scripts/compare.sh [seconds]       (default 10 s per run)
#
# Needs: RabbitMQ on 127.0.0.1:5672 (guest/guest), python3. Starts its own Warren on a free
# port with a fresh data folder.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
TMP=$(mktemp -d)
trap 'kill $WPID 2>/dev/null || true; rm -rf "$TMP"' EXIT
go build -o "$TMP/warren" ./cmd/warren
go build -o "$TMP/warren-perf" ./cmd/warren-perf
"$TMP/warren" --amqp-listen 127.0.0.1:0 --http-listen "" --prometheus-listen "" --data-dir "$TMP/data" --addr-file "$TMP/addr" --log-level warn 2>"$TMP/warren.log" &
WPID=$!
for _ in $(seq 100); do [[ -s "$TMP/addr" ]] && break; sleep 0.1; done
WADDR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["amqp"])' "$TMP/addr")
RPID=$(pgrep -f beam.smp | head -1)
WURL="amqp://guest:guest@$WADDR/"
RURL="amqp://guest:guest@127.0.0.1:5672/"

run() { # url pid args... -> json file path on stdout
  local url=$1 pid=$2; shift 2
  local out="$TMP/run.$RANDOM.json"
  "$TMP/warren-perf" --url "$url" --pid "$pid" --json "$@" >"$out" 2>/dev/null
  echo "$out"
}

# name | metric | warren-perf args
scenarios=(
  "publish only 16 B|sent|--producers 1 --consumers 0 --duration ${DUR}s"
  "1->1 autoack 16 B|received|--producers 1 --consumers 1 --autoack --duration ${DUR}s"
  "1->1 manual ack (multi 50) prefetch 100|received|--producers 1 --consumers 1 --prefetch 100 --multiple-ack 50 --duration ${DUR}s"
  "fanout 1->10 queues->10 consumers|received|--producers 1 --consumers 10 --queues 10 --exchange-type fanout --autoack --duration ${DUR}s"
  "latency at 1000 msg/s|latency|--producers 1 --consumers 1 --rate 1000 --duration ${DUR}s"
  "durable persistent 1 KiB confirms 256 1->1|confirmed|--producers 1 --consumers 1 --durable --persistent --confirm 256 --size 1024 --prefetch 256 --multiple-ack 50 --duration ${DUR}s"
  "durable persistent 1 KiB confirms 256 8x8|confirmed|--producers 8 --consumers 8 --queues 8 --durable --persistent --confirm 256 --size 1024 --prefetch 256 --multiple-ack 50 --duration ${DUR}s"
)

printf '| scenario | Warren msg/s | RabbitMQ msg/s | ratio | Warren msg/s per broker core | RabbitMQ per core | ratio |\n|---|---|---|---|---|---|---|\n'
for s in "${scenarios[@]}"; do
  IFS='|' read -r name metric args <<<"$s"
  # shellcheck disable=SC2086
  w=$(run "$WURL" "$WPID" $args)
  # shellcheck disable=SC2086
  r=$(run "$RURL" "$RPID" $args)
  python3 - "$name" "$metric" "$w" "$r" <<'EOF'
import json, sys
name, metric, wf, rf = sys.argv[1:5]
w, r = json.load(open(wf)), json.load(open(rf))
if metric == "latency":
    lw, lr = w["latency"], r["latency"]
    print(f"| {name} | p50/p99/p99.9 {lw['p50_us']:.0f}/{lw['p99_us']:.0f}/{lw['p99_9_us']:.0f} µs | {lr['p50_us']:.0f}/{lr['p99_us']:.0f}/{lr['p99_9_us']:.0f} µs | p99 {lr['p99_us']/max(lw['p99_us'],1):.2f}x lower | | | |")
    sys.exit()
key = metric + "_per_s"
def per_core(d):
    c = d["broker"]["cores"]
    return d[key] / c if c > 0 else 0
wv, rv = w[key], r[key]
wc, rc = per_core(w), per_core(r)
print(f"| {name} | {wv:,.0f} | {rv:,.0f} | {wv/max(rv,1):.2f}x | {wc:,.0f} | {rc:,.0f} | {wc/max(rc,1):.2f}x |")
EOF
done

# The manual-ack scenario again with the producer and the consumer in two processes: in one
# process an unthrottled producer takes the tool's CPU from its own consumer (RabbitMQ's credit
# flow slows its producer instead), so this layout shows what the broker itself sustains.
split() { # url pid -> json file of the consumer process
  local url=$1 pid=$2 prefix="split-$RANDOM-"
  local out="$TMP/split.$RANDOM.json"
  "$TMP/warren-perf" --url "$url" --pid "$pid" --producers 1 --consumers 0 --keep --queue-prefix "$prefix" --duration "$((DUR + 2))s" >/dev/null 2>&1 &
  local ppid=$!
  sleep 0.5
  "$TMP/warren-perf" --url "$url" --pid "$pid" --json --producers 0 --consumers 1 --prefetch 100 --multiple-ack 50 --queue-prefix "$prefix" --duration "${DUR}s" >"$out" 2>/dev/null
  wait "$ppid" || true
  echo "$out"
}
w=$(split "$WURL" "$WPID")
r=$(split "$RURL" "$RPID")
python3 - "$w" "$r" <<'EOF'
import json, sys
w, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
def per_core(d):
    c = d["broker"]["cores"]
    return d["received_per_s"] / c if c > 0 else 0
wv, rv, wc, rc = w["received_per_s"], r["received_per_s"], per_core(w), per_core(r)
print(f"| 1->1 manual ack (multi 50) prefetch 100, producer in its own process | {wv:,.0f} | {rv:,.0f} | {wv/max(rv,1):.2f}x | {wc:,.0f} | {rc:,.0f} | {wc/max(rc,1):.2f}x |")
EOF

# Memory scenarios: RSS growth of the broker (a fresh Warren for each; RabbitMQ as it is).
for args in "--idle-queues 10000" "--idle-connections 1000"; do
  kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null || true
  rm -rf "$TMP/data" "$TMP/addr"
  "$TMP/warren" --amqp-listen 127.0.0.1:0 --http-listen "" --prometheus-listen "" --data-dir "$TMP/data" --addr-file "$TMP/addr" --log-level warn 2>>"$TMP/warren.log" &
  WPID=$!
  for _ in $(seq 100); do [[ -s "$TMP/addr" ]] && break; sleep 0.1; done
  WURL="amqp://guest:guest@$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["amqp"])' "$TMP/addr")/"
  # shellcheck disable=SC2086
  w=$(run "$WURL" "$WPID" $args)
  # shellcheck disable=SC2086
  r=$(run "$RURL" "$RPID" $args)
  python3 - "$args" "$w" "$r" <<'EOF2'
import json, sys
name, wf, rf = sys.argv[1:4]
w, r = json.load(open(wf)), json.load(open(rf))
gw, gr = w["broker"]["rss_growth_kib"] / 1024, r["broker"]["rss_growth_kib"] / 1024
if gr <= 0:  # RabbitMQ returned memory from the earlier scenarios meanwhile: no figure
    print(f"| {name} | +{gw:.1f} MB RSS in {w['seconds']:.2f} s | n/a (its RSS fell during the run) in {r['seconds']:.2f} s | | | | |")
else:
    print(f"| {name} | +{gw:.1f} MB RSS in {w['seconds']:.2f} s | +{gr:.1f} MB RSS in {r['seconds']:.2f} s | {gr/max(gw,0.1):.1f}x less | | | |")
EOF2
done
