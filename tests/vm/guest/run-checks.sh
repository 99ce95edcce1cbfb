#!/usr/bin/env bash
# In the guest: synfin's setup as a user runs it, then the checks the host asked for
# (/mnt/host/checks), one line each on the second serial port ("NAME<TAB>ok|FAIL<TAB>detail"),
# full output in /mnt/host/out/NAME.log.
set -uo pipefail
share=/mnt/host
results=/dev/ttyS1
out=$share/out
checks=$(cat "$share/checks")

report() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" > "$results"; }
wanted() { [[ ",$checks," == *",$1,"* ]]; }

# check NAME COMMAND...: run COMMAND; its last line of output says how it went. After a failed
# setup the checks that need synfin are skipped, with the reason.
needs_setup=0
check() {
  local name=$1 started=$SECONDS
  shift
  if [ "$needs_setup" = 1 ]; then
    report "$name" skip "synfin's setup failed"
    return
  fi
  if "$@" > "$out/$name.log" 2>&1; then
    report "$name" ok "$(tail -n 1 "$out/$name.log" | cut -c1-150) ($((SECONDS - started)) s)"
  else
    report "$name" FAIL "exit $?: $(tail -n 1 "$out/$name.log" | cut -c1-150) ($((SECONDS - started)) s)"
  fi
}

report kernel ok "$(uname -r), bcc $(python3 -c 'import bcc; print(bcc.__version__)' 2>/dev/null || echo none)"
cp -a "$share/repo" /root/synfin
cd /root/synfin || exit 1
if wanted setup; then
  check setup bash scripts/setup.sh
  [ -x .venv/bin/synfin ] || needs_setup=1
fi
if wanted doctor; then
  check doctor .venv/bin/synfin doctor
fi
if wanted run-check; then
  check run-check .venv/bin/synfin run --check
fi
if wanted tests; then
  # The test tooling, beside the regular install the setup made: pytest, and a real
  # Prometheus for the exporter's test.
  check test-tools bash -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null && .venv/bin/pip install -q pytest hypothesis pytest-rerunfailures && .venv/bin/pytest --version'
  # The host's policy (scripts/test.sh): a failed test is run up to twice more, and the
  # summary line reported here says so ("1 rerun").
  pytest=(.venv/bin/pytest -q -p no:cacheprovider -p no:randomly --reruns 2 --reruns-delay 1)
  check scenarios "${pytest[@]}" tests/integration/test_scenarios.py \
    -k "client-closes or server-closes or refused or reset-abort or syn-retransmit"
  check exporter-exact "${pytest[@]}" tests/integration/test_exporter.py -k exactly
  check trace-ladder "${pytest[@]}" tests/integration/test_trace.py -k "test_scenario_ladder and client-closes"
  check run-check-tiers "${pytest[@]}" tests/integration/test_run.py -k test_check_attaches
  check per-connection "${pytest[@]}" tests/integration/test_per_connection.py -k "client-closes or refused"
  # The lean tier against the timers tier in every scenario, and the bucket walk that finds
  # hand-overs (the bucket table moved into the namespace in 6.1).
  check lean-tier "${pytest[@]}" tests/integration/test_lean_tier.py \
    -k "both_tiers or hand_over or server_handshake"
fi
if wanted lean-closes; then
  check lean-closes bash tests/vm/guest/lean-closes.sh
fi
if wanted lab; then
  # The lab VM for real: vagrant/provision/*.sh as Vagrant runs them, from /opt/synfin.
  rm -rf /opt/synfin && cp -a /root/synfin /opt/synfin && rm -rf /opt/synfin/.venv
  provision=/opt/synfin/vagrant/provision
  check provision-synfin bash "$provision/synfin.sh"
  check provision-prometheus bash "$provision/prometheus.sh"
  # Grafana's repository is not reachable from here: the step must say so in one line.
  if bash "$provision/grafana.sh" > "$out/provision-grafana.log" 2>&1; then
    report provision-grafana ok "installed (the repository was reachable)"
  elif grep -q "is not reachable from this machine" "$out/provision-grafana.log"; then
    report provision-grafana ok "failed as expected, clearly: $(grep -o 'Grafana.s package repository.*reachable from this machine' "$out/provision-grafana.log" | head -n 1)"
  else
    report provision-grafana FAIL "$(tail -n 1 "$out/provision-grafana.log" | cut -c1-150)"
  fi
  check provision-lab bash "$provision/lab.sh"
  check lab-services bash /opt/synfin/tests/vm/guest/lab-checks.sh "$out"
fi
report finished ok "$SECONDS s in the guest"
