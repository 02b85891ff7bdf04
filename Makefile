# The two commands of the README: `make demo` and `make test`.
GO ?= go

# Packages that do not link the Temporal server run under the race detector; the
# ones that do (the embedded server, the end-to-end suites) run without it, because a
# race build of the server takes several times the memory and time.
LIGHT := ./auth/... ./job/... ./control/... ./wire/... ./store/... ./blob/... ./execfile/... ./sdk/... ./workflows/... \
	./activities/... ./containerworker/... ./tenantbox/... ./nodeagent/... ./runtime/... ./workers/... ./temporalconn/... \
	./status/... ./dashboard/... ./temporalmetrics/... ./deploy/grafana/... ./gpu/... ./placement/... ./ship/...
HEAVY := ./temporalserver/... ./devcluster/... ./provider/... ./cmd/... ./tests/...

.PHONY: demo test build bench vet workflowcheck fuzz docker chromium qemu deps

demo: deps
	./scripts/demo.sh

WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0

# The heavy packages build static (CGO_ENABLED=0): the docker provider's nodes run the
# burla binary and the test programs FROM scratch. They run one package at a time: each
# starts whole clusters, and on two cores they would starve each other's heartbeats.
# What the heavy tests keep (go test -artifacts), such as the dashboard's
# screenshots in headless Chromium, lands in $(ARTIFACTS)/_artifacts.
ARTIFACTS ?= $(CURDIR)/test-artifacts
test: deps vet workflowcheck fuzz docker chromium qemu
	$(GO) test -race -count=1 $(LIGHT)
	mkdir -p $(ARTIFACTS)
	CGO_ENABLED=0 $(GO) test -p 1 -count=1 -timeout 30m -artifacts -outputdir $(ARTIFACTS) $(HEAVY)

docker:
	./scripts/ensure-docker.sh

# Debian's chromium, for the dashboard's end-to-end test.
chromium:
	./scripts/ensure-package.sh chromium /usr/bin/chromium "the dashboard's end-to-end test"

# Debian's qemu-user-static, to run a linux/arm64 program that ships a build of
# itself for the amd64 nodes (tests/e2e TestProgramBuildsItselfForTheNodes).
qemu:
	./scripts/ensure-package.sh qemu-user-static /usr/bin/qemu-aarch64-static "the arm64 client's end-to-end test"

# vet also checks that every Go file is gofmt'ed, that go.mod and go.sum are
# tidy (go mod tidy would change nothing), and that the SDK, programs using it
# and the burla command build for every client platform.
CLIENT_PLATFORMS = darwin/arm64 darwin/amd64 windows/amd64 linux/arm64
vet:
	CGO_ENABLED=0 $(GO) vet ./... ./tests/bench/testdata/shipclient
	@set -e; for p in $(CLIENT_PLATFORMS); do \
		echo "vet for $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} CGO_ENABLED=0 $(GO) vet ./sdk/... ./examples/... ./cmd/burla/...; \
	done
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "not gofmt'ed: $$unformatted" >&2; exit 1; fi
	$(GO) mod tidy -diff

# A short run of every fuzz target (the wire protocol, the store's records, job
# specs and IDs); their corpora in testdata/fuzz also run as plain tests.
# FUZZTIME=1m make fuzz for a longer one. The default is a count of inputs, not a
# time: a timed run that ends while the fuzzer minimizes a new input fails with
# "context deadline exceeded" and no input to blame, which a busy machine made
# happen in make test.
FUZZTIME ?= 100000x
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# Temporal's linter: workflow code must not call time.Now, start goroutines, etc.
workflowcheck:
	$(GO) run $(WORKFLOWCHECK) ./workflows/...

build: deps
	CGO_ENABLED=0 $(GO) build -o bin/burla ./cmd/burla

# The benchmarks write their figures to tests/bench/results.json, and the README's
# table of them is made from that file.
bench: deps
	CGO_ENABLED=0 $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./tests/bench/ -args -out $(CURDIR)/tests/bench/results.json
	$(GO) run ./tests/bench/readme tests/bench/results.json README.md

deps:
	$(GO) mod download
