#!/bin/bash
# burla node default-1: written by burla's gce provider. It fetches the burla
# binary and runs its node agent under systemd; Compute Engine runs it at every boot.
set -euo pipefail

install -d -m 0755 /opt/burla /var/lib/burla/cache

dst=/opt/burla/burla.new
token=$(curl -fsS --retry 10 --retry-all-errors -H 'Metadata-Flavor: Google' 'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token' | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
curl -fsSL --retry 10 --retry-all-errors -H "Authorization: Bearer $token" -o "$dst" 'https://storage.googleapis.com/storage/v1/b/burla-test-bin/o/releases%2Fv1%2Fburla?alt=media'
chmod 0755 "$dst"
mv -f "$dst" /opt/burla/burla

# The Temporal API key, from Secret Manager into a file only root reads.
token=$(curl -fsS --retry 10 --retry-all-errors -H 'Metadata-Flavor: Google' 'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token' | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
key=$(curl -fsS --retry 10 --retry-all-errors -H "Authorization: Bearer $token" 'https://secretmanager.googleapis.com/v1/projects/burla-proj/secrets/temporal-api-key/versions/latest:access' | sed -n 's/.*"data" *: *"\([^"]*\)".*/\1/p' | base64 -d)
install -d -m 0700 /etc/burla
(umask 077; printf 'BURLA_TEMPORAL_API_KEY=%s\n' "$key" >/etc/burla/agent.env)
unset key token

cat >/opt/burla/node-agent.sh <<'BURLA_EOF'
#!/bin/sh
exec '/opt/burla/burla' 'node-agent' \
  '--id' 'default-1' \
  '--cluster' 'default' \
  '--cpus' '4' \
  '--ram-mb' '8192' \
  '--temporal' 'burla.a1b2c.tmprl.cloud:7233' \
  '--namespace' 'default' \
  '--store' 'nats://10.128.0.2:4222' \
  '--cache-dir' '/var/lib/burla/cache' \
  '--runtime' 'process' \
  '--metrics-addr' '0.0.0.0:9464' \
  '--env' 'ghcr.io/acme/etl:1'
BURLA_EOF
chmod 0755 /opt/burla/node-agent.sh

cat >/etc/systemd/system/burla-node-agent.service <<'BURLA_EOF'
[Unit]
Description=burla node agent
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/opt/burla/node-agent.sh
Environment=BURLA_TEMPORAL_TLS=1
EnvironmentFile=/etc/burla/agent.env
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
BURLA_EOF

systemctl daemon-reload
systemctl restart burla-node-agent.service
