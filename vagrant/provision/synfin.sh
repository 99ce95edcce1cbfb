#!/usr/bin/env bash
# Install synfin with the project's own setup, and run it as its systemd service.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

act bash "$SYNFIN_DIR/scripts/setup.sh"
install_file "$SYNFIN_DIR/deploy/synfin.service" /etc/systemd/system/synfin.service
write_file /etc/synfin/synfin.yml <<'YAML'
# synfin run settings (docs/metrics.md). The lab's scenarios use ports 20000-20999.
listen_address: 0.0.0.0:9977
port_label_listening: true
ground_truth: all
ground_truth_interval: 15
YAML
act systemctl daemon-reload
act systemctl enable --now synfin.service
say "synfin serves http://localhost:9977/metrics"
