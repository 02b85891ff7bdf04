#!/usr/bin/env bash
# One-time set-up of a Google Cloud project for burla: the APIs, a Firestore
# database and a bucket (the data plane: firestore://PROJECT?bucket=BUCKET), a
# bucket of its own for the burla binary the VMs run, the service accounts of the
# node VMs and of the control plane with the roles each needs, and firewall rules.
# Safe to run again: each resource is looked up before it is made, roles are added
# (never removed), and the bucket's lifecycle and the firewall rules are set to
# what this script says. It stops if either account may write the binary's
# bucket, which would let a job plant code that every VM runs as root at boot.
#
#   PROJECT=my-project ./deploy/gcp/setup.sh
#
# See deploy/gcp/README.md for what each piece is for and the steps that follow.
set -euo pipefail

: "${PROJECT:?set PROJECT to the Google Cloud project ID}"
REGION=${REGION:-us-central1}
ZONE=${ZONE:-${REGION}-a}
BUCKET=${BUCKET:-${PROJECT}-burla}
BIN_BUCKET=${BIN_BUCKET:-${PROJECT}-burla-bin} # the burla binary: only people write it
FIRESTORE_DB=${FIRESTORE_DB:-(default)}
SA_NAME=${SA_NAME:-burla-node}                    # node VMs run as this account
CONTROL_SA_NAME=${CONTROL_SA_NAME:-burla-control} # the control-plane VM runs as this one
NETWORK=${NETWORK:-default}
SUBNET=${SUBNET:-} # a subnetwork of NETWORK in REGION, if the network has custom subnets
NODE_TAG=${NODE_TAG:-burla-node}
CONTROL_TAG=${CONTROL_TAG:-burla-control}
TEMPORAL_TAG=${TEMPORAL_TAG:-burla-temporal}
# The days after which large inputs and outputs are deleted from the bucket.
BLOB_TTL_DAYS=${BLOB_TTL_DAYS:-7}

NODE_SA="${SA_NAME}@${PROJECT}.iam.gserviceaccount.com"
CONTROL_SA="${CONTROL_SA_NAME}@${PROJECT}.iam.gserviceaccount.com"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

# retry runs a command up to 6 times, 10 s apart: a service account just made
# takes a little while to be visible to IAM policy calls.
retry() {
	local i
	for i in 1 2 3 4 5 6; do
		if "$@"; then
			return 0
		fi
		[ "$i" = 6 ] && return 1
		log "retrying in 10 s: $*"
		sleep 10
	done
}

# q single-quotes a value for the commands printed at the end (Google Cloud names
# hold no quotes).
q() { printf "'%s'" "$1"; }

command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
# The VMs' accounts write the data bucket (the store's blobs) and must not write
# the binary's.
[ "${BIN_BUCKET}" != "${BUCKET}" ] || die "BIN_BUCKET and BUCKET are both ${BUCKET}: the binary needs a bucket the VMs only read"

# --- APIs --------------------------------------------------------------------
log "enabling APIs in project ${PROJECT}"
gcloud services enable \
	compute.googleapis.com \
	firestore.googleapis.com \
	storage.googleapis.com \
	iam.googleapis.com \
	--project="${PROJECT}"

# --- Firestore ---------------------------------------------------------------
if db_type=$(gcloud firestore databases describe --database="${FIRESTORE_DB}" --project="${PROJECT}" \
	--format='value(type)' 2>/dev/null); then
	log "Firestore database ${FIRESTORE_DB} exists (${db_type})"
	# burla uses the Firestore API; a database in Datastore mode refuses it.
	[ "${db_type}" = FIRESTORE_NATIVE ] ||
		die "Firestore database ${FIRESTORE_DB} is ${db_type}, not FIRESTORE_NATIVE: set FIRESTORE_DB to a new database ID (e.g. burla) and run again"
else
	log "creating Firestore database ${FIRESTORE_DB} (Native mode) in ${REGION}"
	gcloud firestore databases create \
		--project="${PROJECT}" \
		--database="${FIRESTORE_DB}" \
		--location="${REGION}" \
		--type=firestore-native
fi

# --- Buckets -----------------------------------------------------------------
ensure_bucket() { # name
	if gcloud storage buckets describe "gs://$1" --project="${PROJECT}" >/dev/null 2>&1; then
		log "bucket gs://$1 exists"
	else
		log "creating bucket gs://$1 in ${REGION}"
		gcloud storage buckets create "gs://$1" \
			--project="${PROJECT}" \
			--location="${REGION}" \
			--uniform-bucket-level-access
	fi
}
ensure_bucket "${BUCKET}"
# The binary's bucket: VMs fetch burla-<sha256> from it at every boot and check
# its digest; people upload it (control-plane.sh upload), and no VM may write it.
ensure_bucket "${BIN_BUCKET}"

# The store keeps its blobs under "burla/" (the store URL's prefix): programs as
# bin-<sha256>, large inputs as in-<job>-<index>, large outputs as
# out-<job>-<index>. Only the inputs and outputs expire; programs stay. This
# replaces the bucket's whole lifecycle configuration.
log "setting the lifecycle of gs://${BUCKET}: delete burla/in-* and burla/out-* after ${BLOB_TTL_DAYS} days"
lifecycle=$(mktemp)
trap 'rm -f "${lifecycle}"' EXIT
cat >"${lifecycle}" <<EOF
{
  "lifecycle": {
    "rule": [
      {
        "action": {"type": "Delete"},
        "condition": {"age": ${BLOB_TTL_DAYS}, "matchesPrefix": ["burla/in-", "burla/out-"]}
      }
    ]
  }
}
EOF
gcloud storage buckets update "gs://${BUCKET}" --project="${PROJECT}" --lifecycle-file="${lifecycle}" >/dev/null

# --- Service accounts and roles ---------------------------------------------
ensure_sa() { # name, display name
	local email="$1@${PROJECT}.iam.gserviceaccount.com"
	if gcloud iam service-accounts describe "${email}" --project="${PROJECT}" >/dev/null 2>&1; then
		log "service account ${email} exists"
	else
		log "creating service account ${email}"
		gcloud iam service-accounts create "$1" --project="${PROJECT}" --display-name="$2"
	fi
}
grant_project() { # email, role
	retry gcloud projects add-iam-policy-binding "${PROJECT}" \
		--member="serviceAccount:$1" --role="$2" --condition=None --quiet >/dev/null
}
grant_bucket() { # bucket, email, role
	retry gcloud storage buckets add-iam-policy-binding "gs://$1" --project="${PROJECT}" \
		--member="serviceAccount:$2" --role="$3" >/dev/null
}

ensure_sa "${SA_NAME}" "burla node VMs"
ensure_sa "${CONTROL_SA_NAME}" "burla control plane"

# Both run tenants' code (the nodes their jobs, the control plane each new program
# once, to learn its functions), and that code may get the account's token: the
# binary's bucket is read-only to both.
for sa in "${NODE_SA}" "${CONTROL_SA}"; do
	log "granting ${sa} the data plane and logging roles, and read access to the binary"
	grant_project "${sa}" roles/datastore.user                      # Firestore reads and writes (every database of the project)
	grant_bucket "${BUCKET}" "${sa}" roles/storage.objectAdmin      # the store's blobs: objects of this bucket only
	grant_bucket "${BIN_BUCKET}" "${sa}" roles/storage.objectViewer # fetch the binary at boot, and never write it
	grant_project "${sa}" roles/logging.logWriter                   # the guest agent's and startup script's logs
	grant_project "${sa}" roles/monitoring.metricWriter             # for the Ops Agent, if installed
done

log "granting ${CONTROL_SA} the right to make node VMs that run as ${NODE_SA}"
grant_project "${CONTROL_SA}" roles/compute.instanceAdmin.v1
retry gcloud iam service-accounts add-iam-policy-binding "${NODE_SA}" --project="${PROJECT}" \
	--member="serviceAccount:${CONTROL_SA}" --role=roles/iam.serviceAccountUser >/dev/null

# Roles are only ever added here, so one granted earlier (by an older version of
# this script, which kept the binary in the data bucket, or by hand) stays: check
# that neither account may write the binary's bucket, there or through the
# project. (A custom role, or a group the account is in, is not looked into.)
bin_policy=$(gcloud storage buckets get-iam-policy "gs://${BIN_BUCKET}" --project="${PROJECT}" \
	--flatten='bindings[].members' --format='csv[no-heading](bindings.role,bindings.members)') ||
	die "cannot read the IAM policy of gs://${BIN_BUCKET}, to check that the VMs' accounts only read it"
project_policy=$(gcloud projects get-iam-policy "${PROJECT}" \
	--flatten='bindings[].members' --format='csv[no-heading](bindings.role,bindings.members)') ||
	die "cannot read the IAM policy of project ${PROJECT}, to check that the VMs' accounts only read gs://${BIN_BUCKET}"
writes_binary=""
while IFS=, read -r role member; do
	case "${member}" in "serviceAccount:${NODE_SA}" | "serviceAccount:${CONTROL_SA}") ;; *) continue ;; esac
	case "${role}" in
	roles/storage.objectViewer | roles/storage.legacyObjectReader | roles/storage.legacyBucketReader) ;;
	*) writes_binary="${writes_binary}      ${member#serviceAccount:}: ${role} on gs://${BIN_BUCKET}
" ;;
	esac
done <<<"${bin_policy}"
while IFS=, read -r role member; do
	case "${member}" in "serviceAccount:${NODE_SA}" | "serviceAccount:${CONTROL_SA}") ;; *) continue ;; esac
	case "${role}" in
	roles/owner | roles/editor | roles/storage.admin | roles/storage.objectAdmin | roles/storage.objectCreator | roles/storage.objectUser)
		writes_binary="${writes_binary}      ${member#serviceAccount:}: ${role} on project ${PROJECT}
" ;;
	esac
done <<<"${project_policy}"
if [ -n "${writes_binary}" ]; then
	printf '%s' "${writes_binary}" >&2
	die "these roles let an account whose VMs run tenants' code write gs://${BIN_BUCKET}, the binary every VM runs as root: remove them (gcloud storage buckets remove-iam-policy-binding, gcloud projects remove-iam-policy-binding) and run again"
fi

# --- Firewall ----------------------------------------------------------------
gcloud compute networks describe "${NETWORK}" --project="${PROJECT}" >/dev/null 2>&1 ||
	die "network ${NETWORK} does not exist in project ${PROJECT}: set NETWORK to an existing VPC network"

# ensure_rule makes an ingress rule from source tags to target tags, or sets an
# existing one of that name to it. Rule names are per project, so they carry the
# network's name.
ensure_rule() { # name, ports, source tags, target tags, description
	if gcloud compute firewall-rules describe "$1" --project="${PROJECT}" >/dev/null 2>&1; then
		log "updating firewall rule $1"
		gcloud compute firewall-rules update "$1" --project="${PROJECT}" \
			--rules="$2" --source-tags="$3" --target-tags="$4" --description="$5"
	else
		log "creating firewall rule $1"
		gcloud compute firewall-rules create "$1" --project="${PROJECT}" \
			--network="${NETWORK}" --direction=INGRESS --action=ALLOW \
			--rules="$2" --source-tags="$3" --target-tags="$4" --description="$5"
	fi
}
# Node agents serve Prometheus metrics on 9464, for a Prometheus on the
# control-plane VM. (On the default network, default-allow-internal admits every
# VM of the network to every port anyway.)
ensure_rule "burla-${NETWORK}-node-metrics" tcp:9464 "${CONTROL_TAG}" "${NODE_TAG}" \
	"burla: node metrics, for a Prometheus on the control-plane VM"
# Nodes and the control plane dial Temporal's frontend. Give the Temporal VM the
# tag ${TEMPORAL_TAG}. (The default network's default-allow-internal rule allows
# this already; other networks need it.)
ensure_rule "burla-${NETWORK}-temporal" tcp:7233 "${NODE_TAG},${CONTROL_TAG}" "${TEMPORAL_TAG}" \
	"burla: Temporal frontend, from nodes and the control plane"

# burla opens nothing to the internet, but rules already on the network may: the
# default network comes with default-allow-ssh, -rdp and -icmp from 0.0.0.0/0,
# which apply to every VM, burla's included. Say so; change nothing.
open=""
while IFS=, read -r name net ranges tags disabled; do
	[ "${net}" = "${NETWORK}" ] || continue
	case "${disabled}" in True | true) continue ;; esac
	case ";${ranges};" in
	*";0.0.0.0/0;"* | *";::/0;"*) ;;
	*) continue ;;
	esac
	# A rule with no target tags applies to every VM of the network.
	case ";${tags};" in
	";;" | *";${NODE_TAG};"* | *";${CONTROL_TAG};"* | *";${TEMPORAL_TAG};"*)
		open="${open}      ${name} (targets: ${tags:-every VM of the network})
" ;;
	esac
done < <(gcloud compute firewall-rules list --project="${PROJECT}" --filter='direction=INGRESS' \
	--format='csv[no-heading](name,network.basename(),sourceRanges.list(separator=";"),targetTags.list(separator=";"),disabled)')
if [ -n "${open}" ]; then
	log "WARNING: these ingress rules on network ${NETWORK} admit traffic from anywhere to burla's VMs:"
	printf '%s' "${open}" >&2
	log "burla needs none of them; delete or narrow them if nothing else does"
fi

# --- What to run next --------------------------------------------------------
if [ "${FIRESTORE_DB}" = "(default)" ]; then
	store="firestore://${PROJECT}?bucket=${BUCKET}"
else
	store="firestore://${PROJECT}/${FIRESTORE_DB}?bucket=${BUCKET}"
fi
temporal=${TEMPORAL_ADDRESS:-TEMPORAL_HOST:7233}
namespace=${TEMPORAL_NAMESPACE:-default}
# Node VMs go on global/networks/default unless told otherwise.
network_flags=""
if [ "${NETWORK}" != default ]; then
	network_flags+=" \\
    --gce-network $(q "global/networks/${NETWORK}")"
fi
if [ -n "${SUBNET}" ]; then
	network_flags+=" \\
    --gce-subnetwork $(q "regions/${REGION}/subnetworks/${SUBNET}")"
fi

cat <<EOF

Done. Project ${PROJECT} has:
  Firestore database ${FIRESTORE_DB}, bucket gs://${BUCKET}
  bucket gs://${BIN_BUCKET} for the binary, read-only to both accounts
  node service account          ${NODE_SA}
  control-plane service account ${CONTROL_SA}
  firewall rules burla-${NETWORK}-node-metrics, burla-${NETWORK}-temporal on network ${NETWORK}
(Firestore TTL policies are optional and not set: see deploy/gcp/README.md.)

Next, see deploy/gcp/README.md: upload the binary (deploy/gcp/control-plane.sh upload, which
prints its SHA256), run a Temporal (tag its VM ${TEMPORAL_TAG}), then start the control plane with
BINARY_SHA256=SHA256 deploy/gcp/control-plane.sh, which runs on its VM:

  burla control-plane \\
    --temporal $(q "${temporal}") --namespace $(q "${namespace}") \\
    --store $(q "${store}") \\
    --gce-project $(q "${PROJECT}") --gce-zone $(q "${ZONE}") \\
    --gce-binary-url $(q "gs://${BIN_BUCKET}/burla-SHA256") --upload-binary=false \\
    --gce-service-account $(q "${NODE_SA}") --gce-tag $(q "${NODE_TAG}")${network_flags} \\
    --metrics-addr 0.0.0.0:9464

and bring up a cluster (from anywhere that reaches Temporal):

  burla cluster up --temporal $(q "${temporal}") --namespace $(q "${namespace}") \\
    --provider gce --project $(q "${PROJECT}") --zone $(q "${ZONE}") --nodes 2 --cpus 2

Programs then run with:

  BURLA_TEMPORAL_ADDRESS=$(q "${temporal}") BURLA_NAMESPACE=$(q "${namespace}") BURLA_STORE_URL=$(q "${store}")
EOF
