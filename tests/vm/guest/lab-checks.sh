#!/usr/bin/env bash
# In the lab guest, after provisioning: each service as the lab promises it, asked of systemd
# and of Prometheus' HTTP API. One "NAME<TAB>ok|FAIL<TAB>detail" line per check on ttyS1.
set -uo pipefail
out=${1:-/tmp}
results=/dev/ttyS1
# Whatever happens, the services' own words come out with the results.
trap 'journalctl -u synfin -u prometheus -u synfin-lab --no-pager > "$out/journal.log" 2>&1' EXIT
prom=http://localhost:9090/api/v1
failed=0

report() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" > "$results"; [ "$2" = ok ] || failed=1; }
query() { curl -fsS --max-time 10 "$prom/query" --data-urlencode "query=$1"; }
value() { python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(sum(float(x["value"][1]) for x in r) if r else "none")'; }

# wait_for SECONDS COMMAND...: until COMMAND succeeds
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 5
  done
}

for unit in synfin prometheus synfin-lab; do
  if wait_for 300 systemctl is-active --quiet "$unit"; then
    report "service-$unit" ok "active"
  else
    report "service-$unit" FAIL "$(systemctl is-active "$unit"): $(journalctl -u "$unit" -n 1 --no-pager -o cat | cut -c1-120)"
  fi
done

bounding=$(systemctl show synfin -p CapabilityBoundingSet --value)
expected=$(sed -n 's/^CapabilityBoundingSet=//p' /etc/systemd/system/synfin.service)
normalise() { tr ' ' '\n' | tr '[:upper:]' '[:lower:]' | sort | tr '\n' ' '; }
if [ "$(normalise <<<"$bounding")" = "$(normalise <<<"$expected")" ]; then
  report synfin-capability-bounding ok "$bounding"
else
  report synfin-capability-bounding FAIL "systemd: $bounding; unit: $expected"
fi
if wait_for 180 sh -c "curl -fsS --max-time 10 '$prom/targets' | grep -q '\"job\":\"synfin\".*\"health\":\"up\"\|\"health\":\"up\".*\"job\":\"synfin\"'"; then
  report prometheus-target-up ok "job synfin up"
else
  report prometheus-target-up FAIL "$(curl -fsS --max-time 10 "$prom/targets" | cut -c1-150)"
fi

# Once serving (the target is up), synfin keeps CAP_BPF, CAP_SYS_ADMIN and CAP_SYS_PTRACE
# (ground_truth: all) and drops the rest, CAP_SYSLOG included (docs/security.md).
pid=$(systemctl show synfin -p MainPID --value)
effective=$(sed -n 's/^CapEff:\t*//p' "/proc/$pid/status")
if [ "$effective" = 0000008000280000 ]; then
  report synfin-kept-capabilities ok "CapEff $effective: CAP_BPF, CAP_SYS_ADMIN, CAP_SYS_PTRACE"
else
  report synfin-kept-capabilities FAIL "CapEff $effective, expected 0000008000280000"
fi
# A capability the kernel lacks is said too; one lost for want of a privilege names CAP_.
if journalctl -u synfin --no-pager -o cat | grep "without " | grep -q "CAP_"; then
  report synfin-every-capability FAIL "$(journalctl -u synfin --no-pager -o cat | grep "without " | grep "CAP_" | head -n 1 | cut -c1-150)"
else
  report synfin-every-capability ok "$(journalctl -u synfin --no-pager -o cat | grep -o 'lean tier, [0-9]* hooks attached' | head -n 1)"
fi

# Rules not yet evaluated say health "unknown": give the first evaluations time.
for _ in $(seq 12); do
  rules=$(curl -fsS --max-time 10 "$prom/rules")
  grep -q '"health":"unknown"' <<<"$rules" || break
  sleep 5
done
groups=$(python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]["groups"]; rules=[r for g in d for r in g["rules"]]; bad=[r["name"] for r in rules if r.get("health")!="ok"]; print(len(d), len(rules), len([r for r in rules if r["type"]=="alerting"]), ",".join(bad))' <<<"$rules")
read -r ngroups nrules nalerts unhealthy <<<"$groups"
if [ "${nrules:-0}" -gt 0 ] && [ -z "${unhealthy:-}" ]; then
  report prometheus-rules ok "$ngroups groups, $nrules rules ($nalerts alerts), all healthy"
else
  report prometheus-rules FAIL "$ngroups groups, $nrules rules, unhealthy: ${unhealthy:-none}"
fi

# An alert rule's own expression, evaluated by Prometheus.
alert_expr=$(python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]["groups"]; a=[r for g in d for r in g["rules"] if r["type"]=="alerting"]; print(a[0]["name"] + "\t" + a[0]["query"])' <<<"$rules")
alert=${alert_expr%%$'\t'*}
expr=${alert_expr#*$'\t'}
if answer=$(query "$expr") && grep -q '"status":"success"' <<<"$answer"; then
  report prometheus-alert-expression ok "$alert evaluates ($(value <<<"$answer") now)"
else
  report prometheus-alert-expression FAIL "$alert: ${answer:-no answer}"
fi

first=$(query 'sum(synfin_tcp_connects_total)' | value)
sleep 60
second=$(query 'sum(synfin_tcp_connects_total)' | value)
if [ "$first" != none ] && python3 -c "import sys; sys.exit(0 if float('$second') > float('$first') else 1)" 2>/dev/null; then
  report connects-rising ok "synfin_tcp_connects_total $first -> $second in 60 s (Prometheus)"
else
  report connects-rising FAIL "synfin_tcp_connects_total $first -> $second in 60 s"
fi
exit "$failed"
