# vmrestore: the README's commands.

.PHONY: run test bench bench-quick

run:
	go run ./cmd/api

test:
	go test -race -timeout 30m ./...

# The figures vmrestore competes on, each beside a reference measured in the same run.
# BENCH_OUT=<file> also writes them as JSON.
bench:
	go run ./cmd/vmrestore-bench

bench-quick:
	go run ./cmd/vmrestore-bench -quick
