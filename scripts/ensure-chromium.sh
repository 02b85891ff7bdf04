#!/usr/bin/env bash
# make test: make sure Debian's chromium is installed (as root), for the dashboard's
# end-to-end test in headless Chromium. Never fails: without chromium that test
# fails and says to run this script, and this script says loudly why it could not.
set -u
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "*** /usr/bin/chromium is missing and not root: the dashboard test will fail (install Debian's chromium) ***" >&2
	exit 0
fi
echo "installing chromium..." >&2
if ! apt-get update -qq >/dev/null; then
	echo "*** apt-get update failed: could not install chromium; the dashboard test will fail ***" >&2
	exit 0
fi
log=$(mktemp)
if ! DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l apt-get install -y -qq chromium >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	echo "*** could not install chromium: the dashboard test will fail ***" >&2
	exit 0
fi
rm -f "$log"
[ -x /usr/bin/chromium ] || echo "*** chromium installed but /usr/bin/chromium is missing: the dashboard test will fail ***" >&2
exit 0
