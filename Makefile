# Atlas: the two set-up commands are `make run` and `make test` (see README.md).
GO        ?= go
PKGS      := ./...
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: run test bench vet fmt build postgres redis versitygw

## run: start PostgreSQL if needed, create and migrate the database, serve on :8080
run: postgres
	$(GO) run ./cmd/atlas serve

## test: every test (unit, integration and end-to-end) against the real PostgreSQL, Redis and an S3
## server (versitygw, started by the tests), with -race
test: postgres redis versitygw
	$(GO) vet $(PKGS)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) test $(TEST_FLAGS) $(PKGS)

## bench: the benchmarks of docs/performance.md (not part of make test)
bench: postgres
	bash scripts/bench.sh

build:
	$(GO) build -o bin/atlas ./cmd/atlas

postgres:
	@bash scripts/ensure-postgres.sh

redis:
	@bash scripts/ensure-redis.sh

versitygw:
	@bash scripts/ensure-versitygw.sh >/dev/null
