#!/usr/bin/env bash
# Starts (or stops) a 3-node RabbitMQ cluster on this machine for side-by-side measurements:
# nodes rq1..rq3@localhost, AMQP on 127.0.0.1:5782/5783/5784, management on 15782-15784,
# distribution ports 25782-25784, data in ${RQ_DIR:-/tmp/rq-cluster}. It leaves the machine's own
# RabbitMQ (5672) alone.
#   scripts/rabbitmq-cluster.sh start | stop
set -euo pipefail
dir=${RQ_DIR:-/tmp/rq-cluster}
cmd=${1:-start}
node() { echo "rq$1@localhost"; }
envfor() { # i -> the environment of node i
  local i=$1
  echo RABBITMQ_NODENAME="$(node "$i")" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$((5781 + i)) \
    RABBITMQ_DIST_PORT=$((25781 + i)) RABBITMQ_MNESIA_BASE="$dir/rq$i/mnesia" RABBITMQ_LOG_BASE="$dir/rq$i/log" \
    RABBITMQ_PID_FILE="$dir/rq$i/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/plugins" \
    RABBITMQ_CONFIG_FILE="$dir/rq$i/rabbitmq"
}
case $cmd in
start)
  mkdir -p "$dir"
  echo '[rabbitmq_management].' > "$dir/plugins"
  for i in 1 2 3; do
    mkdir -p "$dir/rq$i"
    id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq:rabbitmq "$dir" # the server runs as rabbitmq
    printf 'listeners.tcp.default = 127.0.0.1:%d\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n' $((5781 + i)) $((15781 + i)) > "$dir/rq$i/rabbitmq.conf"
    id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq:rabbitmq "$dir"
    env $(envfor "$i") rabbitmq-server -detached
  done
  for i in 1 2 3; do
    for _ in $(seq 90); do rabbitmqctl -n "$(node "$i")" -q await_startup >/dev/null 2>&1 && break; sleep 1; done
  done
  for i in 2 3; do
    rabbitmqctl -n "$(node "$i")" -q stop_app
    rabbitmqctl -n "$(node "$i")" -q join_cluster "$(node 1)"
    rabbitmqctl -n "$(node "$i")" -q start_app
  done
  rabbitmqctl -n "$(node 1)" -q cluster_status | head -20
  ;;
stop)
  for i in 1 2 3; do rabbitmqctl -n "$(node "$i")" -q stop >/dev/null 2>&1 || true; done
  ;;
esac
