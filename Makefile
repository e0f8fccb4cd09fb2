# Entry points for people and CI; the logic lives in scripts/.
#   make test    every check CI runs (scripts/test.sh): packages, gofmt,
#                go mod tidy -diff, go vet, go test -race, the allocation
#                tests without -race, short fuzzing
#   make build   bin/latchkey
#   make bench   Go benchmarks, then scripts/bench (the wrk suite,
#                docs/bench/README.md; about 10 min)
#   make fuzz    each fuzz target for FUZZTIME (default 1m)
#   make lint    gofmt and go vet only

FUZZTIME ?= 1m

.PHONY: test build bench fuzz lint

test:
	scripts/test.sh

build:
	go build -o bin/latchkey ./cmd/latchkey

bench:
	go test -run '^$$' -bench . -benchmem ./...
	scripts/bench

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/test.sh fuzz

lint:
	scripts/test.sh gofmt vet
