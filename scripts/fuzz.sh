#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a short time each: the CI fuzz
# step, and a quick check before sending a change to a decoder.
#
#   FUZZTIME=10s scripts/fuzz.sh     # the default; any -fuzztime value works (1m, 500x)
#
# Targets are found by their `func FuzzXxx(f *testing.F)` lines, so a new one is run
# without touching this script. `go test -fuzz` takes one target at a time, and
# fuzzing needs a build without -race. A target that fails stops the run; the
# fuzzer has then written the failing input under the package's testdata/fuzz/,
# where it becomes a regression case for `go test` once committed.
set -euo pipefail

cd "$(dirname "$0")/.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-10s}"

# "<package dir> <target>" per line, skipping hidden directories and testdata.
mapfile -t targets < <(
	find . \( -path '*/.*' -o -name testdata \) -prune -o -name '*_test.go' -print0 |
		xargs -0 grep -HE '^func Fuzz[A-Za-z0-9_]*\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\)' |
		sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*$#\1 \2#' |
		sort -u
)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found under $(pwd)" >&2
	exit 1
fi

start=$SECONDS
for t in "${targets[@]}"; do
	dir="${t% *}"
	name="${t#* }"
	echo "fuzz: $name in $dir for $FUZZTIME"
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$dir/"; then
		echo "fuzz: FAILED: $name in $dir; the failing input is under $dir/testdata/fuzz/$name/" >&2
		exit 1
	fi
done
echo "fuzz: ${#targets[@]} targets passed in $((SECONDS - start))s"
