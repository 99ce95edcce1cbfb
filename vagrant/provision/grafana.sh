#!/usr/bin/env bash
# Grafana from Grafana's own package repository, with synfin's datasource and dashboards
# provisioned from files.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_install apt-transport-https gnupg wget ca-certificates
act mkdir -p /etc/apt/keyrings
act sh -c 'wget -q -O - https://apt.grafana.com/gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/grafana.gpg'
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
