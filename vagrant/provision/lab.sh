#!/usr/bin/env bash
# The lab scenarios, looping as a service at a gentle rate, so the dashboards have traffic.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

write_file /etc/systemd/system/synfin-lab.service <<UNIT
[Unit]
Description=synfin lab: TCP scenarios between two network namespaces, in a loop
After=synfin.service

[Service]
ExecStart=$SYNFIN_DIR/.venv/bin/synfin lab client-closes server-closes half-close refused reset-abort keepalive time-wait-storm --loop --per-minute 12
Restart=on-failure
RestartSec=10s

[Install]
WantedBy=multi-user.target
UNIT
act systemctl daemon-reload
act systemctl enable --now synfin-lab.service
say "lab scenarios loop in synfin-lab.service"
