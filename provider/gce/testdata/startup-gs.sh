#!/bin/bash
# burla node default-1: written by burla's gce provider. It keeps tenants' code
# from the metadata server, fetches the burla binary, checks it, and runs its node
# agent under systemd; Compute Engine runs it at every boot.
set -euo pipefail

# fail says why the node cannot start, on the serial console as well, and ends the
# script before the node agent starts.
console=/dev/ttyS0
fail() {
  printf 'burla node default-1: %s\n' "$*" >&2
  printf 'burla node default-1: %s\n' "$*" 2>/dev/null >"$console" || true
  exit 1
}

# Only root reaches the metadata server, and the service account tokens it hands
# out: tenants' code runs as uid 65534, in processes or in containers on the host's
# network, and gets DNS and NTP there and nothing else of the link-local range.
# Workers reach a Firestore store with tokens the node agent hands them.
if ! command -v nft >/dev/null; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables; } ||
    fail "nft is missing and nftables would not install: cannot close the metadata server to tenants' code, so the node agent does not start"
fi
nft -f - <<'BURLA_EOF' || fail "nft refused the ruleset that closes the metadata server to tenants' code, so the node agent does not start"
# The rules that close the metadata server (and, with it, the VM's service
# account tokens) to every process that is not root: tenants' code runs as other
# users, in processes or in containers on the host's network, and gets DNS and NTP
# there and nothing else of the link-local range. Loaded with nft -f by the node
# VMs' startup script (provider/gce) and by the control plane VM's
# (deploy/gcp/control-plane.sh), at every boot; its delete line makes loading it
# again replace the table rather than add to it.
table inet burla
delete table inet burla
table inet burla {
  chain closed {
    ip daddr 169.254.169.254 meta l4proto { tcp, udp } th dport 53 return
    ip daddr 169.254.169.254 udp dport 123 return
    ip6 daddr fd20:ce::254 meta l4proto { tcp, udp } th dport 53 return
    ip6 daddr fd20:ce::254 udp dport 123 return
    meta l4proto tcp reject with tcp reset
    reject
  }
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr 169.254.0.0/16 meta skuid != 0 jump closed
    ip6 daddr fd20:ce::254 meta skuid != 0 jump closed
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip daddr 169.254.0.0/16 jump closed
    ip6 daddr fd20:ce::254 jump closed
  }
}
BURLA_EOF

install -d -m 0755 /opt/burla /var/lib/burla/cache

dst=/opt/burla/burla.new
token=$(curl -fsS --retry 10 --retry-all-errors -H 'Metadata-Flavor: Google' 'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token' | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
curl -fsSL --retry 10 --retry-all-errors -H "Authorization: Bearer $token" -o "$dst" 'https://storage.googleapis.com/storage/v1/b/burla-test-bin/o/releases%2Fv1%20rc%2Fburla?alt=media'
# Run only the binary the control plane vouches for: whoever could write where it
# is fetched from would otherwise run code as root here.
if ! printf '%s  %s\n' 'af190bc817f7fbf5d65ab3cd0ff91f58196e4bc1607da198669442b92739e1c4' "$dst" | sha256sum --check --status; then
  got=$(sha256sum <"$dst" | cut -d ' ' -f 1) || got=unreadable
  rm -f "$dst"
  fail "refusing the burla binary fetched at boot: its SHA-256 is $got, not af190bc817f7fbf5d65ab3cd0ff91f58196e4bc1607da198669442b92739e1c4, so the node agent does not start"
fi
chmod 0755 "$dst"
mv -f "$dst" /opt/burla/burla

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
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
BURLA_EOF

systemctl daemon-reload
systemctl restart burla-node-agent.service
