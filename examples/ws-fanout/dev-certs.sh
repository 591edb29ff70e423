#!/usr/bin/env bash
# Development certificates for node-1..3.yaml, in examples/ws-fanout/certs
# (ignored by git: never commit a key).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
certs="$here/certs"
if [ -e "$certs/ca.key" ]; then
  echo "$certs already holds a CA; remove it to start over"
  exit 0
fi
cargo run --quiet -p pg-node -- certs create-ca --dir "$certs" --cluster ws-demo
for n in 1 2 3; do
  cargo run --quiet -p pg-node -- certs create-node "node-$n" --dir "$certs"
done
