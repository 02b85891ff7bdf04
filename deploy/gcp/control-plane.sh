#!/usr/bin/env bash
# The burla control plane on a small Compute Engine VM.
#
#   PROJECT=my-project ./deploy/gcp/control-plane.sh upload
#       builds burla for linux/amd64 from this repository and uploads it to
#       gs://BIN_BUCKET/burla-SHA256, named by its SHA-256, which it prints: the
#       control-plane VM and the node VMs fetch it from there at boot. Run it first,
#       and again for every new version.
#
#   PROJECT=my-project TEMPORAL_ADDRESS=10.128.0.5:7233 BINARY_SHA256=SHA256 ./deploy/gcp/control-plane.sh
#       makes the VM, if it does not exist, running as the control-plane service
#       account with network tag burla-control. Its startup script, run at every
#       boot, fetches the binary, refuses it unless its SHA-256 is BINARY_SHA256, and
#       (re)starts `burla control-plane` under systemd (Restart=always), which tells
#       the nodes that digest in turn. If the VM exists, its configuration is
#       replaced and the command that applies it is printed.
#
# Run deploy/gcp/setup.sh first, with the same settings. See deploy/gcp/README.md.
set -euo pipefail

: "${PROJECT:?set PROJECT to the Google Cloud project ID}"
REGION=${REGION:-us-central1}
ZONE=${ZONE:-${REGION}-a}
BUCKET=${BUCKET:-${PROJECT}-burla}
BIN_BUCKET=${BIN_BUCKET:-${PROJECT}-burla-bin}
FIRESTORE_DB=${FIRESTORE_DB:-(default)}
SA_NAME=${SA_NAME:-burla-node}
CONTROL_SA_NAME=${CONTROL_SA_NAME:-burla-control}
NETWORK=${NETWORK:-default}
SUBNET=${SUBNET:-}
NODE_TAG=${NODE_TAG:-burla-node}
CONTROL_TAG=${CONTROL_TAG:-burla-control}
TEMPORAL_NAMESPACE=${TEMPORAL_NAMESPACE:-default}
VM_NAME=${VM_NAME:-burla-control}
MACHINE_TYPE=${MACHINE_TYPE:-e2-small}

NODE_SA="${SA_NAME}@${PROJECT}.iam.gserviceaccount.com"
CONTROL_SA="${CONTROL_SA_NAME}@${PROJECT}.iam.gserviceaccount.com"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'control-plane.sh: %s\n' "$*" >&2; exit 1; }

command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed: https://cloud.google.com/sdk/docs/install"

tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
# The nftables ruleset that closes the metadata server to all but root, which the
# node VMs load too.
ruleset="$(cd "$(dirname "$0")/../.." && pwd)/provider/gce/metadata-block.nft"
[ -r "${ruleset}" ] || die "${ruleset} is missing: run this script from a checkout of the repository"

case "${1:-create}" in
upload)
	command -v go >/dev/null 2>&1 || die "go is not installed"
	cd "$(dirname "$0")/../.."
	log "building burla for linux/amd64 (the first build compiles the embedded Temporal server: minutes)"
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -o "${tmp}/burla" ./cmd/burla
	if command -v sha256sum >/dev/null 2>&1; then
		sum=$(sha256sum "${tmp}/burla")
	else
		sum=$(shasum -a 256 "${tmp}/burla") # macOS
	fi
	sum=${sum%% *}
	# Named by its digest, an object never changes: VMs told an older digest go on
	# fetching the older binary until the control plane is told the new one.
	log "uploading it to gs://${BIN_BUCKET}/burla-${sum}"
	gcloud storage cp --no-clobber "${tmp}/burla" "gs://${BIN_BUCKET}/burla-${sum}" --project="${PROJECT}"
	cat <<EOF

Uploaded. Its SHA-256 is ${sum}; run the control plane on it with
  BINARY_SHA256=${sum} $0
EOF
	exit 0
	;;
create) ;;
*) die "usage: $0 [upload|create]" ;;
esac

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS to the host:port of the Temporal frontend, as the VMs reach it (e.g. 10.128.0.5:7233)}"
: "${BINARY_SHA256:?set BINARY_SHA256 to the SHA-256 of the binary to run, which 'control-plane.sh upload' prints}"
[[ "${BINARY_SHA256}" =~ ^[0-9a-f]{64}$ ]] || die "BINARY_SHA256=${BINARY_SHA256}: want 64 lowercase hex digits, as sha256sum prints"
BINARY_URL="gs://${BIN_BUCKET}/burla-${BINARY_SHA256}"

if [ "${FIRESTORE_DB}" = "(default)" ]; then
	STORE_URL="firestore://${PROJECT}?bucket=${BUCKET}"
else
	STORE_URL="firestore://${PROJECT}/${FIRESTORE_DB}?bucket=${BUCKET}"
fi
GCE_NETWORK=""
if [ "${NETWORK}" != default ]; then
	GCE_NETWORK="global/networks/${NETWORK}"
fi
GCE_SUBNETWORK=""
if [ -n "${SUBNET}" ]; then
	GCE_SUBNETWORK="regions/${REGION}/subnetworks/${SUBNET}"
fi

# The VM reads its settings from a systemd environment file, which takes values
# literally: keep them to characters that need no quoting anywhere.
for v in TEMPORAL_ADDRESS TEMPORAL_NAMESPACE STORE_URL PROJECT ZONE BINARY_URL BINARY_SHA256 NODE_SA NODE_TAG GCE_NETWORK GCE_SUBNETWORK; do
	[[ "${!v}" =~ ^[A-Za-z0-9._:/?=@%-]*$ ]] || die "${v}=${!v}: only letters, digits and . _ : / ? = @ % - are allowed"
done

gcloud storage objects describe "${BINARY_URL}" --project="${PROJECT}" >/dev/null 2>&1 ||
	die "${BINARY_URL} does not exist: run '$0 upload' first"

cat >"${tmp}/config.env" <<EOF
BURLA_TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS}
BURLA_NAMESPACE=${TEMPORAL_NAMESPACE}
BURLA_STORE_URL=${STORE_URL}
GCE_PROJECT=${PROJECT}
GCE_ZONE=${ZONE}
GCE_BINARY_URL=${BINARY_URL}
GCE_BINARY_SHA256=${BINARY_SHA256}
GCE_SERVICE_ACCOUNT=${NODE_SA}
GCE_TAG=${NODE_TAG}
GCE_NETWORK=${GCE_NETWORK}
GCE_SUBNETWORK=${GCE_SUBNETWORK}
EOF

# The startup script, which Compute Engine runs as root at every boot. Nothing in
# it is expanded here: it reads its settings from the burla-config metadata value.
cat >"${tmp}/startup.sh" <<'STARTUP_EOF'
#!/bin/bash
# burla control plane: written by deploy/gcp/control-plane.sh. It fetches the burla
# binary, checks it, and runs `burla control-plane` under systemd; Compute Engine
# runs it at every boot. Settings: the instance's burla-config metadata value.
set -euo pipefail

# fail says why the control plane cannot start, on the serial console as well, and
# ends the script before it starts.
console=/dev/ttyS0
fail() {
	printf 'burla control plane: %s\n' "$*" >&2
	printf 'burla control plane: %s\n' "$*" 2>/dev/null >"${console}" || true
	exit 1
}

md() {
	curl -fsS --retry 10 --retry-all-errors -H 'Metadata-Flavor: Google' \
		"http://metadata.google.internal/computeMetadata/v1/$1"
}

STARTUP_EOF

# The control plane runs tenants' programs once to learn what they register (as
# users of their own; it is root for that), so this VM closes the metadata server,
# and the token of its account, which may make VMs, to every user but root, with
# the ruleset the node VMs load.
{
	cat <<'STARTUP_EOF'
if ! command -v nft >/dev/null; then
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables; } ||
		fail "nft is missing and nftables would not install: cannot close the metadata server to the programs the control plane inspects, so it does not start"
fi
nft -f - <<'BURLA_NFT' || fail "nft refused the ruleset that closes the metadata server to the programs the control plane inspects, so it does not start"
STARTUP_EOF
	cat "${ruleset}"
	echo BURLA_NFT
} >>"${tmp}/startup.sh"

cat >>"${tmp}/startup.sh" <<'STARTUP_EOF'

install -d -m 0755 /opt/burla /etc/burla
md instance/attributes/burla-config >/etc/burla/control-plane.env.new
mv -f /etc/burla/control-plane.env.new /etc/burla/control-plane.env

# The binary, through the Cloud Storage JSON API with the VM's service account
# token, as the node VMs fetch it (no gcloud needed). Only the one whose digest
# control-plane.sh was given runs: whoever could write the bucket would otherwise
# run code here, where the power to make VMs is. The control plane then tells the
# nodes the digest of the binary it runs, which is this one.
url=$(sed -n 's/^GCE_BINARY_URL=//p' /etc/burla/control-plane.env)
want=$(sed -n 's/^GCE_BINARY_SHA256=//p' /etc/burla/control-plane.env)
[[ "${want}" =~ ^[0-9a-f]{64}$ ]] || fail "burla-config holds no GCE_BINARY_SHA256 to check the binary against: run deploy/gcp/control-plane.sh with BINARY_SHA256"
rest=${url#gs://}
bucket=${rest%%/*}
object=${rest#*/}
token=$(md instance/service-accounts/default/token | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
curl -fsSL --retry 10 --retry-all-errors -H "Authorization: Bearer ${token}" -o /opt/burla/burla.new \
	"https://storage.googleapis.com/storage/v1/b/${bucket}/o/${object//\//%2F}?alt=media"
if ! printf '%s  %s\n' "${want}" /opt/burla/burla.new | sha256sum --check --status; then
	got=$(sha256sum </opt/burla/burla.new | cut -d ' ' -f 1) || got=unreadable
	rm -f /opt/burla/burla.new
	fail "refusing the burla binary fetched from ${url}: its SHA-256 is ${got}, not ${want}, so the control plane does not start"
fi
chmod 0755 /opt/burla/burla.new
mv -f /opt/burla/burla.new /opt/burla/burla

cat >/opt/burla/control-plane.sh <<'BURLA_EOF'
#!/bin/bash
# Run by burla-control-plane.service with the settings of /etc/burla/control-plane.env.
set -euo pipefail
args=(control-plane
	--temporal "${BURLA_TEMPORAL_ADDRESS}"
	--namespace "${BURLA_NAMESPACE}"
	--store "${BURLA_STORE_URL}"
	--data-dir /var/lib/burla-control
	--metrics-addr 0.0.0.0:9464
	--gce-project "${GCE_PROJECT}"
	--gce-zone "${GCE_ZONE}"
	--gce-binary-url "${GCE_BINARY_URL}"
	--gce-service-account "${GCE_SERVICE_ACCOUNT}"
	--gce-tag "${GCE_TAG}"
	# The binary at --gce-binary-url is the one this VM fetched at boot, and this
	# VM's account may only read it.
	--upload-binary=false
)
if [ -n "${GCE_NETWORK:-}" ]; then
	args+=(--gce-network "${GCE_NETWORK}")
fi
if [ -n "${GCE_SUBNETWORK:-}" ]; then
	args+=(--gce-subnetwork "${GCE_SUBNETWORK}")
fi
exec /opt/burla/burla "${args[@]}"
BURLA_EOF
chmod 0755 /opt/burla/control-plane.sh

# The control plane runs as root, so that the programs it inspects run as users of
# their own (which an unprivileged user could not arrange: they would run as it,
# with its token), but with no more than that needs: a read-only system, its
# state in /var/lib/burla-control, a /tmp of its own, and the capabilities to
# start a program as another user and clear up after it.
cat >/etc/systemd/system/burla-control-plane.service <<'BURLA_EOF'
[Unit]
Description=burla control plane
Wants=network-online.target
After=network-online.target

[Service]
EnvironmentFile=/etc/burla/control-plane.env
Environment=HOME=/var/lib/burla-control
ExecStart=/opt/burla/control-plane.sh
Restart=always
RestartSec=5
StateDirectory=burla-control
StateDirectoryMode=0700
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
RestrictSUIDSGID=yes
CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL

[Install]
WantedBy=multi-user.target
BURLA_EOF

systemctl daemon-reload
systemctl enable burla-control-plane.service
systemctl restart burla-control-plane.service
STARTUP_EOF

metadata="startup-script=${tmp}/startup.sh,burla-config=${tmp}/config.env"

if gcloud compute instances describe "${VM_NAME}" --project="${PROJECT}" --zone="${ZONE}" >/dev/null 2>&1; then
	log "VM ${VM_NAME} exists; replacing its startup script and settings"
	gcloud compute instances add-metadata "${VM_NAME}" --project="${PROJECT}" --zone="${ZONE}" \
		--metadata-from-file="${metadata}"
	cat <<EOF

The new settings apply when the startup script next runs: at the next boot, or now with
  gcloud compute ssh ${VM_NAME} --project=${PROJECT} --zone=${ZONE} -- sudo google_metadata_script_runner startup
or with a hard reset of the VM (Temporal keeps every workflow; they go on when the control plane is back)
  gcloud compute instances reset ${VM_NAME} --project=${PROJECT} --zone=${ZONE}
EOF
else
	log "creating VM ${VM_NAME} (${MACHINE_TYPE}, Debian 12) in ${ZONE}"
	subnet_flag=()
	if [ -n "${SUBNET}" ]; then
		subnet_flag=(--subnet="${SUBNET}")
	fi
	gcloud compute instances create "${VM_NAME}" \
		--project="${PROJECT}" \
		--zone="${ZONE}" \
		--machine-type="${MACHINE_TYPE}" \
		--image-family=debian-12 \
		--image-project=debian-cloud \
		--service-account="${CONTROL_SA}" \
		--scopes=cloud-platform \
		--tags="${CONTROL_TAG}" \
		--labels=burla-role=control-plane \
		--network="${NETWORK}" \
		${subnet_flag[@]+"${subnet_flag[@]}"} \
		--metadata-from-file="${metadata}"
fi

cat <<EOF

The control plane's log:
  gcloud compute ssh ${VM_NAME} --project=${PROJECT} --zone=${ZONE} -- sudo journalctl -u burla-control-plane -f
The startup script's log (binary download, systemd set-up):
  gcloud compute ssh ${VM_NAME} --project=${PROJECT} --zone=${ZONE} -- sudo journalctl -u google-startup-scripts

Then bring up a cluster:
  burla cluster up --temporal '${TEMPORAL_ADDRESS}' --namespace '${TEMPORAL_NAMESPACE}' \\
    --provider gce --project '${PROJECT}' --zone '${ZONE}' --nodes 2 --cpus 2
EOF
