#!/bin/bash
# burla node default-1: written by burla's gce provider. It fetches the burla
# binary and runs its node agent under systemd; Compute Engine runs it at every boot.
set -euo pipefail

install -d -m 0755 /opt/burla /var/lib/burla/cache

dst=/opt/burla/burla.new
curl -fsSL --retry 10 --retry-all-errors -o "$dst" 'https://github.com/burla-temporal/burla/releases/download/v1.0.0/burla-linux-amd64'
chmod 0755 "$dst"
mv -f "$dst" /opt/burla/burla

# The docker runtime runs workers in containers on the VM's own engine.
if ! command -v docker >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi

cat >/opt/burla/node-agent.sh <<'BURLA_EOF'
#!/bin/sh
exec '/opt/burla/burla' 'node-agent' \
  '--id' 'default-1' \
  '--cluster' 'default' \
  '--cpus' '4' \
  '--ram-mb' '8192' \
  '--temporal' '10.128.0.2:7233' \
  '--namespace' 'default' \
  '--store' 'nats://10.128.0.2:4222' \
  '--cache-dir' '/var/lib/burla/cache' \
  '--runtime' 'docker' \
  '--metrics-addr' '0.0.0.0:9464' \
  '--env' 'ghcr.io/acme/etl:1'
BURLA_EOF
chmod 0755 /opt/burla/node-agent.sh

cat >/etc/systemd/system/burla-node-agent.service <<'BURLA_EOF'
[Unit]
Description=burla node agent
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
ExecStart=/opt/burla/node-agent.sh
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
BURLA_EOF

systemctl daemon-reload
systemctl restart burla-node-agent.service
