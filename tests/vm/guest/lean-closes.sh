#!/usr/bin/env bash
# In a guest: `synfin run` (lean tier) beside one reset-abort scenario; prints every series of
# the scenario's port, and fails unless both ends' closes were counted.
set -uo pipefail
port=20400
.venv/bin/synfin run --listen-address 127.0.0.1:19977 --ground-truth off --probe-tier lean \
  --port-label "$port" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null' EXIT
for _ in $(seq 120); do
  curl -fs http://127.0.0.1:19977/metrics >/dev/null && break
  sleep 1
done
.venv/bin/synfin lab reset-abort --port "$port"
sleep 3
metrics=$(curl -fs http://127.0.0.1:19977/metrics)
grep "port=\"$port\"" <<<"$metrics" | grep -v " 0.0$"
closes=$(grep "^synfin_tcp_closes_total{.*port=\"$port\"" <<<"$metrics" | awk '{s += $2} END {print s + 0}')
echo "closes counted: $closes (expected 2)"
if [ "$closes" != 2 ]; then
  echo "every non-zero synfin series:"
  grep '^synfin_' <<<"$metrics" | grep -v " 0.0$" | grep -v "_bucket{"
  exit 1
fi
