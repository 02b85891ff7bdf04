#!/usr/bin/env bash
# make test: make sure a Docker engine answers, installing docker.io from Debian and
# starting dockerd when none does (as root). Without one, the Docker tests skip and
# say so loudly. Debian's static busybox is the shell of the test image built for
# jobs in a user's image (no registry can be pulled from). Debian's docker-compose
# (1.29) runs deploy/compose in tests/compose, unless the compose plugin is there.
# tests/faults partitions a node with ip netns and nft (iproute2, nftables) and
# flock (util-linux).
set -u
updated=""
apt_install() {
	[ "$(id -u)" = 0 ] || return 1
	echo "installing $1..." >&2
	if [ -z "$updated" ]; then
		apt-get update -qq >/dev/null || return 1
		updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}
[ -x /bin/busybox ] || apt_install busybox-static || echo "*** could not install busybox-static: the user-image test will fail ***" >&2
for tool in ip:iproute2 nft:nftables flock:util-linux; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || apt_install "${tool#*:}" ||
		echo "*** could not install ${tool#*:}: the partition test will fail ***" >&2
done
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 ||
	apt_install docker-compose || echo "*** could not install docker-compose: the compose test will be skipped ***" >&2
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "*** no Docker engine and not root: Docker tests will be skipped ***" >&2
	exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
	apt_install docker.io || { echo "*** could not install docker.io: Docker tests will be skipped ***" >&2; exit 0; }
fi
echo "starting dockerd..." >&2
nohup dockerd >/tmp/burla-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
	docker info >/dev/null 2>&1 && exit 0
	sleep 1
done
echo "*** dockerd did not start (see /tmp/burla-dockerd.log): Docker tests will be skipped ***" >&2
exit 0
