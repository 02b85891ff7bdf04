# The two commands of the README: `make demo` and `make test`.
GO ?= go

# Packages that do not link the Temporal server run under the race detector; the
# ones that do (the embedded server, the end-to-end suites) run without it, because a
# race build of the server takes several times the memory and time.
LIGHT := ./job/... ./names/... ./wire/... ./store/... ./blob/... ./sdk/... ./workflows/... \
	./activities/... ./containerworker/... ./nodeagent/... ./workers/...
HEAVY := ./temporalserver/... ./devcluster/... ./tests/...

.PHONY: demo test build bench vet deps

demo: deps
	./scripts/demo.sh

test: deps vet
	$(GO) test -race -count=1 $(LIGHT)
	$(GO) test -count=1 -timeout 30m $(HEAVY)

vet:
	$(GO) vet ./...

build: deps
	$(GO) build -o bin/burla ./cmd/burla

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./tests/bench/

deps:
	$(GO) mod download
