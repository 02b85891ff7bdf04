#!/usr/bin/env bash
# make demo: start `burla dev` in the background, run examples/quickstart on it, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "building burla and the quick-start program..."
CGO_ENABLED=0 go build -o bin/burla ./cmd/burla
CGO_ENABLED=0 go build -ldflags="-s -w" -o bin/quickstart ./examples/quickstart  # no symbol table nor DWARF: every job ships this binary

data=$(mktemp -d /tmp/burla-demo.XXXXXX)
bin/burla dev --data-dir "$data/cluster" --temporal-port 0 --ui-port 0 --nats-port 0 --metrics-port 0 \
	--ready-file "$data/ready.json" >"$data/dev.log" 2>&1 &
dev=$!
cleanup() {
	kill -INT "$dev" 2>/dev/null || true
	wait "$dev" 2>/dev/null || true
	rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 1800); do
	[ -f "$data/ready.json" ] && break
	if ! kill -0 "$dev" 2>/dev/null; then
		echo "burla dev exited before it was ready:" >&2
		cat "$data/dev.log" >&2
		exit 1
	fi
	sleep 0.1
done
[ -f "$data/ready.json" ] || { echo "burla dev not ready after 3 minutes" >&2; cat "$data/dev.log" >&2; exit 1; }
sed -n '/is ready/,/Ctrl-C stops/p' "$data/dev.log"

field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$data/ready.json"; }
export BURLA_TEMPORAL_ADDRESS=$(field temporal) BURLA_STORE_URL=$(field store)

echo
echo "$ bin/quickstart        # examples/quickstart: double over [1, 2, 3]"
bin/quickstart
