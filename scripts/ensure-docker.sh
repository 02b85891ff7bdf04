#!/usr/bin/env bash
# make test: make sure a Docker engine answers, installing docker.io from Debian and
# starting dockerd when none does (as root). Without one, the Docker tests skip and
# say so loudly.
set -u
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "*** no Docker engine and not root: Docker tests will be skipped ***" >&2
	exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
	echo "installing docker.io..." >&2
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
		|| { echo "*** could not install docker.io: Docker tests will be skipped ***" >&2; exit 0; }
fi
echo "starting dockerd..." >&2
nohup dockerd >/tmp/burla-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
	docker info >/dev/null 2>&1 && exit 0
	sleep 1
done
echo "*** dockerd did not start (see /tmp/burla-dockerd.log): Docker tests will be skipped ***" >&2
exit 0
