# hive-identity: SPIRE-compatible workload identity plane of Neural Hive-Mind.
GO      ?= go
BIN     := bin
VERSION ?= 1.13.3-hive
LDFLAGS := -s -w -X github.com/neural-hive/hive-identity/internal/version.Version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: build test run bench lint clean

CMDS := spire-server spire-agent service-registry orchestrator-dynamic worker-agents flowc-submit

build:
	@for c in $(CMDS); do echo "go build $$c"; $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$c ./cmd/$$c || exit 1; done

# test is what CI runs (.ci/run): formatting, vet, then every test with the race detector
# (CGO is needed by -race only; the shipped binaries stay static).
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# run starts the local identity plane with the embedded SQLite datastore.
run: build
	ONCE=$(ONCE) ./scripts/run-local.sh

bench:
	CGO_ENABLED=1 $(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN) .data
