#!/usr/bin/env bash
# Benchmarks behind docs/performance.md, measured in one run against one database:
#   1. raw pgbench INSERTs of event-shaped rows into a plain copy of the events table (no triggers),
#      1 and 16 clients, 1-row and 10-row statements: the baseline;
#   2. Atlas appends of the same shape through the event store (go test -bench BenchmarkAppend);
#   3. commit-to-read-model lag at a steady command rate (BenchmarkCommitToReadModelLag), in a fresh
#      database on the same server.
# Results go to bench-results/ and a summary to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${ATLAS_BENCH_BASE_URL:-postgres://postgres@127.0.0.1:5432}
DB=atlas_bench
URL="$BASE/$DB?sslmode=disable"
SECS=${BENCH_SECONDS:-15}
OUT=bench-results
mkdir -p "$OUT"

psql -q "$BASE/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DATABASE_URL="$URL" ATLAS_LOG_LEVEL=warn go run ./cmd/atlas migrate
psql -q "$URL" <<'SQL'
CREATE TABLE bench_raw (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING IDENTITY);
SQL

row="('bench', gen_random_uuid(), 1, gen_random_uuid(), 'bench.created', 1,
  jsonb_build_object('space_id', gen_random_uuid(), 'name', 'Research notes', 'slug', 'research-notes', 'visibility', 'private', 'created_at', now()),
  '{\"actor_id\": \"0196a000-0000-7000-8000-000000000001\", \"correlation_id\": \"bench\", \"causation_id\": \"0196a000-0000-7000-8000-000000000002\", \"command_id\": \"0196a000-0000-7000-8000-000000000002\", \"request_id\": \"bench\"}'::jsonb,
  gen_random_uuid(), now(), '\\x00'::bytea, sha256('x'::bytea))"
cols="(stream_type, stream_id, stream_version, event_id, event_type, schema_version, data, metadata, tenant_id, recorded_at, prev_hash, hash)"
echo "INSERT INTO bench_raw $cols VALUES $row;" > "$OUT/raw1.sql"
rows10=$(for _ in $(seq 10); do printf '%s,' "$row"; done)
echo "INSERT INTO bench_raw $cols VALUES ${rows10%,};" > "$OUT/raw10.sql"

declare -A RAW
for events in 1 10; do
  for clients in 1 16; do
    tps=$(pgbench -n -c "$clients" -j 2 -T "$SECS" -f "$OUT/raw$events.sql" "$URL" 2>&1 | awk '/^tps = /{print $3; exit}')
    RAW[$events,$clients]=$tps
    echo "pgbench raw insert: events/statement=$events clients=$clients tps=$tps"
  done
done

ATLAS_BENCH_DATABASE_URL="$URL" go test -run '^$' -bench 'BenchmarkAppend' -benchtime "${SECS}s" ./eventstore/ | tee "$OUT/append.txt"
# The lag benchmark gets a fresh database of its own (same server): its projectors must not first wade
# through the append benchmark's million events.
go test -run '^$' -bench 'BenchmarkCommitToReadModelLag' -benchtime 1x -timeout 10m ./cmd/atlas/ | tee "$OUT/lag.txt"

echo
echo "== summary (same database, same run) =="
printf '%-10s %-8s %14s %14s %8s\n' events writers "raw tx/s" "atlas tx/s" ratio
for events in 1 10; do
  for clients in 1 16; do
    atlas=$(awk -v n="events=$events/writers=$clients-" 'index($1, n) {for (i=1;i<=NF;i++) if ($(i+1)=="tx/s") print $i}' "$OUT/append.txt")
    raw=${RAW[$events,$clients]}
    ratio=$(awk -v a="$atlas" -v r="$raw" 'BEGIN{ if (r>0) printf "%.0f%%", 100*a/r }')
    printf '%-10s %-8s %14s %14s %8s\n' "$events" "$clients" "$raw" "$atlas" "$ratio"
  done
done
grep -E 'Lag' "$OUT/lag.txt" || true
