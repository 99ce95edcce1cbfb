#!/usr/bin/env bash
# Prometheus from the distribution, scraping synfin every 5 s with synfin's rules loaded.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_install prometheus
install_file "$SYNFIN_DIR/dashboards/rules/synfin.rules.yml" /etc/prometheus/synfin.rules.yml
write_file /etc/prometheus/prometheus.yml <<'YAML'
# Written by synfin's lab provisioning (vagrant/provision/prometheus.sh).
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - /etc/prometheus/synfin.rules.yml
scrape_configs:
  - job_name: synfin
    static_configs:
      - targets: ['localhost:9977']
  - job_name: prometheus
    static_configs:
      - targets: ['localhost:9090']
YAML
act systemctl restart prometheus
say "Prometheus on http://localhost:9090"
