#!/usr/bin/env bash
# Starts a 3-node Warren cluster on loopback in the foreground (make cluster): AMQP on
# 5672/5673/5674, management on 15672/15673/15674, Prometheus on 15692/15693/15694, gossip on
# 25672/25674/25676 (node-to-node on the next port up), data in ./data/node1..3, a cluster key
# in ./data/cluster.key (made on first use). ^C stops every node. PORT_OFFSET=100 moves every
# port up by 100 (beside a RabbitMQ on the default ports).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data bin
go build -o bin/warren ./cmd/warren
if [[ ! -s data/cluster.key ]]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > data/cluster.key
  echo >> data/cluster.key
  chmod 600 data/cluster.key
fi
o=${PORT_OFFSET:-0}
join=127.0.0.1:$((25672 + o)),127.0.0.1:$((25674 + o)),127.0.0.1:$((25676 + o))
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop INT TERM EXIT
for i in 1 2 3; do
  bin/warren --node-name "warren-$i" --data-dir "data/node$i" \
    --amqp-listen "127.0.0.1:$((5671 + i + o))" --http-listen "127.0.0.1:$((15671 + i + o))" \
    --prometheus-listen "127.0.0.1:$((15691 + i + o))" \
    --cluster-listen "127.0.0.1:$((25670 + 2 * i + o))" --cluster-join "$join" --cluster-expect 3 \
    --cluster-key-file data/cluster.key "$@" 2>&1 | sed -u "s/^/[node$i] /" &
  pids+=($!)
done
wait
