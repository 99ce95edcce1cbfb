#!/usr/bin/env bash
# Grafana from Grafana's own package repository, with synfin's datasource and dashboards
# provisioned from files.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# SYNFIN_PROVISION_SKIP_GRAFANA=1: leave Grafana out (a machine that cannot reach its
# repository; synfin and Prometheus do not need it).
if [ "${SYNFIN_PROVISION_SKIP_GRAFANA:-0}" = 1 ]; then
  say "Grafana skipped (SYNFIN_PROVISION_SKIP_GRAFANA=1)"
  exit 0
fi
apt_install apt-transport-https gnupg wget ca-certificates
act mkdir -p /etc/apt/keyrings
key=https://apt.grafana.com/gpg.key
if [ "$DRY_RUN" != 1 ] && ! wget -q -T 20 -t 1 -O /tmp/grafana.gpg.key "$key"; then
  say "error: Grafana's package repository ($key) is not reachable from this machine; fix the network, or set SYNFIN_PROVISION_SKIP_GRAFANA=1 to provision without Grafana" >&2
  exit 1
fi
act gpg --dearmor --yes -o /etc/apt/keyrings/grafana.gpg /tmp/grafana.gpg.key
write_file /etc/apt/sources.list.d/grafana.list <<'LIST'
deb [signed-by=/etc/apt/keyrings/grafana.gpg] https://apt.grafana.com stable main
LIST
act apt-get update -q
apt_install grafana
install_file "$SYNFIN_DIR/dashboards/provisioning/datasources/synfin-prometheus.yml" \
  /etc/grafana/provisioning/datasources/synfin-prometheus.yml
install_file "$SYNFIN_DIR/dashboards/provisioning/dashboards/synfin.yml" \
  /etc/grafana/provisioning/dashboards/synfin.yml
for dashboard in "$SYNFIN_DIR"/dashboards/grafana/*.json; do
  install_file "$dashboard" "/var/lib/grafana/dashboards/synfin/$(basename "$dashboard")"
done
act systemctl daemon-reload
act systemctl enable --now grafana-server
say "Grafana on http://localhost:3000 (admin/admin), folder synfin"
