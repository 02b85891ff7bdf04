#!/usr/bin/env bash
# make test: make sure a Debian package a test needs is installed (as root).
#
#	ensure-package.sh PACKAGE FILE WHAT
#
# installs PACKAGE unless FILE exists; WHAT names the test that needs it. Never
# fails: without the package that test fails and says to run this script, and
# this script says loudly why it could not install it.
set -u
pkg=$1 file=$2 what=$3
[ -e "$file" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "*** $file is missing and not root: $what will fail (install Debian's $pkg) ***" >&2
	exit 0
fi
echo "installing $pkg..." >&2
if ! apt-get update -qq >/dev/null; then
	echo "*** apt-get update failed: could not install $pkg; $what will fail ***" >&2
	exit 0
fi
log=$(mktemp)
if ! DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l apt-get install -y -qq "$pkg" >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	echo "*** could not install $pkg: $what will fail ***" >&2
	exit 0
fi
rm -f "$log"
[ -e "$file" ] || echo "*** $pkg installed but $file is missing: $what will fail ***" >&2
exit 0
