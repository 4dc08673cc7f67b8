# vmrestore: the commands a developer runs. `make help` lists them; a target's `## ` comment is
# its line there.

.PHONY: help run test lint dashboards bench bench-quick
.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## run the api in embedded mode (in-memory Redis, demo site, simulator hypervisor)
	go run ./cmd/api

test: ## run every test with the race detector (see docs/development.md for what the tests need)
	go test -race -timeout 30m ./...

lint: ## gofmt, go vet, staticcheck and a tidy go.mod, as CI runs them
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	go vet ./...
	go tool staticcheck ./...
	go mod tidy -diff

dashboards: ## regenerate dashboards/*.json from their code in internal/dashboards
	go run ./cmd/vmrestore-dashboards

# The figures vmrestore competes on, each beside a reference measured in the same run.
# BENCH_OUT=<file> also writes them as JSON.
bench: ## measure every figure at full size beside its reference (1.5-3 minutes)
	go run ./cmd/vmrestore-bench

bench-quick: ## measure every figure at reduced size (about 25 s)
	go run ./cmd/vmrestore-bench -quick
