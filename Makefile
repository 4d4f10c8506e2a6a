# Atlas: the two set-up commands are `make run` and `make test` (see README.md).
GO        ?= go
PKGS      := ./...
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: run test bench vet fmt build postgres redis versitygw weaviate

## run: start PostgreSQL if needed, create and migrate the database, serve on :8080 (also makes sure
## weaviate-server is installed)
run: postgres weaviate
	$(GO) run ./cmd/atlas serve

## test: every test (unit, integration and end-to-end) against the real PostgreSQL, Redis, an S3
## server (versitygw) and Weaviate (both started by the tests), with -race
test: postgres redis versitygw weaviate
	$(GO) vet $(PKGS)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) test $(TEST_FLAGS) $(PKGS)

## bench: the benchmarks of docs/performance.md (not part of make test)
bench: postgres weaviate
	bash scripts/bench.sh

build:
	$(GO) build -o bin/atlas ./cmd/atlas

postgres:
	@bash scripts/ensure-postgres.sh

redis:
	@bash scripts/ensure-redis.sh

versitygw:
	@bash scripts/ensure-versitygw.sh >/dev/null

weaviate:
	@bash scripts/ensure-weaviate.sh >/dev/null
