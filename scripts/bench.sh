#!/usr/bin/env bash
# Benchmarks behind docs/performance.md, measured in one run against one database:
#   1. the baseline: pgbench (prepared statements) INSERTing event-shaped rows into bench_raw, a plain
#      copy of the events table without its triggers, with 1 and 16 clients, 1 and 10 rows per statement;
#   2. Atlas appends of the same shape through the event store (BenchmarkAppend), each configuration
#      right after its baseline and from the same empty tables, so table and index sizes match;
#   3. commit-to-read-model lag at a steady command rate (BenchmarkCommitToReadModelLag), in a fresh
#      database on the same server, measured first while the server is quiet;
#   4. permission-checked queries over 100,000 spaces and 10,000 users (BenchmarkPermissions);
#   5. file upload and download throughput next to a raw copy of the same bytes (BenchmarkFileTransfer);
#   6. search indexing, latency and lag (BenchmarkSearch), needing weaviate-server (make test installs it);
#   7. chat stream overhead: time to first delta and per-delta latency through Atlas's SSE stream next
#      to a direct client of the same fake provider (BenchmarkChatStream).
#   8. task throughput for the no-op kind next to River alone (BenchmarkTaskThroughput).
#   9. the blue/green rebuild of the notes read model from 1M events while it serves queries, next to a
#      raw COPY of the same rows (BenchmarkRebuild; ATLAS_BENCH_EVENTS sets the event count).
# Results go to bench-results/ and a summary to stdout. BENCH_SECONDS sets each measurement's length.
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
psql -q "$URL" -c "CREATE TABLE bench_raw (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING IDENTITY)"

# Empty both tables between measurements. The events table refuses TRUNCATE through a trigger; this
# throwaway benchmark database switches it off for the moment.
reset_tables() {
  psql -q "$URL" -c "ALTER TABLE events DISABLE TRIGGER events_no_truncate" \
    -c "TRUNCATE events, bench_raw" -c "ALTER TABLE events ENABLE TRIGGER events_no_truncate" -c "CHECKPOINT"
}

row="('bench', gen_random_uuid(), 1, gen_random_uuid(), 'bench.created', 1,
  jsonb_build_object('space_id', gen_random_uuid(), 'name', 'Research notes', 'slug', 'research-notes', 'visibility', 'private', 'created_at', now()),
  '{\"actor_id\": \"0196a000-0000-7000-8000-000000000001\", \"tenant_id\": \"0196a000-0000-7000-8000-000000000001\", \"correlation_id\": \"bench\", \"causation_id\": \"0196a000-0000-7000-8000-000000000002\", \"command_id\": \"0196a000-0000-7000-8000-000000000002\", \"request_id\": \"bench\"}'::jsonb,
  gen_random_uuid(), now(), '\\x00'::bytea, sha256('x'::bytea))"
cols="(stream_type, stream_id, stream_version, event_id, event_type, schema_version, data, metadata, tenant_id, recorded_at, prev_hash, hash)"
echo "INSERT INTO bench_raw $cols VALUES $row;" > "$OUT/raw1.sql"
rows10=$(for _ in $(seq 10); do printf '%s,' "$row"; done)
echo "INSERT INTO bench_raw $cols VALUES ${rows10%,};" > "$OUT/raw10.sql"

# The lag benchmark runs first, on a quiet server (the append benchmarks leave checkpoints behind), in
# a fresh database of its own on the same server.
go test -run '^$' -bench 'BenchmarkCommitToReadModelLag' -benchtime 1x -timeout 10m ./cmd/atlas/ | tee "$OUT/lag.txt"

# Permission-checked queries over 100,000 spaces and 10,000 users, in a fresh database.
go test -run '^$' -bench 'BenchmarkPermissions' -benchtime 1x -timeout 10m ./projections/ | tee "$OUT/permissions.txt"

# Search: indexing next to Weaviate's raw import, latency at 100k chunks, edit-to-searchable lag.
go test -run '^$' -bench 'BenchmarkSearch$' -benchtime 1x -timeout 20m ./cmd/atlas/ | tee "$OUT/search.txt"

# File upload and download through the API next to a raw copy and read of the same bytes on the same disk.
go test -run '^$' -bench 'BenchmarkFileTransfer' -benchtime 1x -timeout 10m ./cmd/atlas/ | tee "$OUT/files.txt"

# Chat replies: what Atlas adds to a streamed reply over a direct client of the same fake provider.
go test -run '^$' -bench 'BenchmarkChatStream' -benchtime 1x -timeout 10m ./cmd/atlas/ | tee "$OUT/chat.txt"

# Tasks: no-op tasks from creation to completion through Atlas, next to River inserting and working a
# no-op job alone, in the same database and run.
go test -run '^$' -bench 'BenchmarkTaskThroughput' -benchtime 1x -timeout 20m ./cmd/atlas/ | tee "$OUT/tasks.txt"

# Rebuild: notes from ATLAS_BENCH_EVENTS (default 1M) events, blue/green while serving reads, next to COPY.
go test -run '^$' -bench 'BenchmarkRebuild' -benchtime 1x -timeout 60m ./projections/ | tee "$OUT/rebuild.txt"

go test -c -o "$OUT/eventstore.test" ./eventstore/
: > "$OUT/append.txt"
declare -A RAW ATLAS
for events in 1 10; do
  for clients in 1 16; do
    reset_tables
    RAW[$events,$clients]=$(pgbench -n -M prepared -c "$clients" -j 2 -T "$SECS" -f "$OUT/raw$events.sql" "$URL" 2>&1 |
      awk '/^tps = /{print $3; exit}')
    reset_tables
    (cd eventstore && ATLAS_BENCH_DATABASE_URL="$URL" "../$OUT/eventstore.test" -test.run '^$' \
      -test.bench "BenchmarkAppend/events=$events\$/writers=$clients\$" -test.benchtime "${SECS}s") | tee -a "$OUT/append.txt"
    ATLAS[$events,$clients]=$(awk -v n="events=$events/writers=$clients-" \
      'index($1, n) {for (i=1;i<=NF;i++) if ($(i+1)=="tx/s") print $i}' "$OUT/append.txt" | tail -n 1)
  done
done


{
echo
echo "== summary (same database, same run; tx/s = appends or INSERT statements per second) =="
printf '%-8s %-8s %12s %12s %8s\n' events writers "raw tx/s" "atlas tx/s" ratio
for events in 1 10; do
  for clients in 1 16; do
    raw=${RAW[$events,$clients]}
    atlas=${ATLAS[$events,$clients]}
    ratio=$(awk -v a="$atlas" -v r="$raw" 'BEGIN{ if (r>0) printf "%.0f%%", 100*a/r }')
    printf '%-8s %-8s %12.0f %12.0f %8s\n' "$events" "$clients" "$raw" "$atlas" "$ratio"
  done
done
grep -E 'Lag' "$OUT/lag.txt" || true
grep -E 'BenchmarkPermissions' "$OUT/permissions.txt" || true
grep -E 'BenchmarkFileTransfer' "$OUT/files.txt" || true
grep -E 'BenchmarkSearch' "$OUT/search.txt" || true
grep -E 'BenchmarkChatStream' "$OUT/chat.txt" || true
grep -E 'BenchmarkTaskThroughput' "$OUT/tasks.txt" || true
grep -E 'BenchmarkRebuild' "$OUT/rebuild.txt" || true
} | tee "$OUT/summary.txt"
