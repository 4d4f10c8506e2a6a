// Package eventstore is Atlas's PostgreSQL event store: one append-only events table, optimistic
// concurrency per stream, uniqueness reservations and idempotency keys written in the same statement
// as the events, personal data sealed per person, and reads of a stream or of the whole log in
// delivery order.
package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
)

// Errors returned by Append. They are *domain.Error values, so the HTTP layer maps them by code.
var (
	// ErrVersionConflict: a stream moved past the expected version (another writer won).
	ErrVersionConflict = &domain.Error{Code: domain.CodeVersionConflict, Message: "the resource was changed by another request; reload it and retry"}
	// ErrReserved: a uniqueness reservation (an email, a slug) is held by another stream.
	ErrReserved = &domain.Error{Code: domain.CodeConflict, Message: "the value is already taken"}
	// ErrIdempotencyKeyUsed: the caller already used the idempotency key (see LookupIdempotency).
	ErrIdempotencyKeyUsed = &domain.Error{Code: domain.CodeConflict, Message: "the idempotency key was already used"}
)

// Metadata travels with every event: who did it, for which tenant, and why. TenantID is filled in
// per event from its stream's tenant.
type Metadata struct {
	ActorID       *uuid.UUID `json:"actor_id,omitempty"`
	TenantID      *uuid.UUID `json:"tenant_id,omitempty"`
	CorrelationID string     `json:"correlation_id,omitempty"`
	CausationID   string     `json:"causation_id,omitempty"`
	CommandID     string     `json:"command_id,omitempty"`
	RequestID     string     `json:"request_id,omitempty"`
}

// StreamAppend is the events one command adds to one stream, at the version the command decided on.
type StreamAppend struct {
	StreamType      string
	StreamID        uuid.UUID
	TenantID        *uuid.UUID
	ExpectedVersion int64 // the stream's version when the command read it; 0 for a new stream
	Events          []domain.Event
}

// Reservation is a unique (scope, key) claimed by a stream, e.g. ("user.email", <hash>).
type Reservation struct {
	Scope    string
	Key      string
	StreamID uuid.UUID
}

// IdempotencyKey records a command's result under the caller's key, in the append's statement.
type IdempotencyKey struct {
	ActorID     uuid.UUID
	Key         string
	RequestHash []byte
	StreamID    uuid.UUID // the stream whose state is the command's result
}

// AppendRequest is everything one command writes, as one atomic statement.
type AppendRequest struct {
	Streams     []StreamAppend
	Metadata    Metadata
	Claim       []Reservation
	Release     []Reservation
	Idempotency *IdempotencyKey
}

// AppendResult says where the command's last event sits and each stream's new version.
type AppendResult struct {
	Position Position
	Versions map[uuid.UUID]int64
}

// Record is a stored event, decoded.
type Record struct {
	Position      Position
	StreamType    string
	StreamID      uuid.UUID
	StreamVersion int64
	EventID       uuid.UUID
	Name          string // full current name, e.g. "space.created.v1" (after upcasting)
	StoredName    string // the name it was stored under
	Event         domain.Event
	Metadata      Metadata
	TenantID      *uuid.UUID
	RecordedAt    time.Time
}

// Store appends to and reads from the events table.
type Store struct {
	pool     *pgxpool.Pool
	registry *Registry
	keys     Cipher
	signal   *Signal
	now      func() time.Time
	onAppend func(events int, elapsed time.Duration, err error)
}

// Options configure a Store.
type Options struct {
	Signal   *Signal          // woken after each committed append; may be nil
	Now      func() time.Time // clock for recorded_at; time.Now when nil
	OnAppend func(events int, elapsed time.Duration, err error)
}

// New returns a Store.
func New(pool *pgxpool.Pool, registry *Registry, keys Cipher, opts Options) *Store {
	s := &Store{pool: pool, registry: registry, keys: keys, signal: opts.Signal, now: opts.Now, onAppend: opts.OnAppend}
	if s.now == nil {
		s.now = time.Now
	}
	if s.signal == nil {
		s.signal = NewSignal()
	}
	return s
}

// Registry returns the store's event registry.
func (s *Store) Registry() *Registry { return s.registry }

// Querier is a pgx connection, pool or transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// appendSQL writes events, reservations and the idempotency row in one statement, so an append costs
// one round trip and is atomic without BEGIN/COMMIT. Every read happens before this statement, so
// the events INSERT is the transaction's first write and its transaction id orders it after whatever
// the command read.
const appendSQL = `
WITH ev AS (
	INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version,
	                    data, metadata, tenant_id, recorded_at)
	SELECT st, sid, sv, eid, et, esv, d,
	       CASE WHEN tid IS NULL THEN $9::jsonb ELSE $9::jsonb || jsonb_build_object('tenant_id', tid) END,
	       tid, $10::timestamptz
	FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], $7::jsonb[], $8::uuid[])
	     WITH ORDINALITY AS u(st, sid, sv, eid, et, esv, d, tid, ord)
	ORDER BY ord
	RETURNING global_position, transaction_id
), released AS (
	DELETE FROM reservations r
	USING unnest($11::text[], $12::text[], $13::uuid[]) AS x(scope, key, sid)
	WHERE r.scope = x.scope AND r.key = x.key AND r.stream_id = x.sid
), claimed AS (
	INSERT INTO reservations (scope, key, stream_id)
	SELECT * FROM unnest($14::text[], $15::text[], $16::uuid[])
), last AS (
	SELECT transaction_id, global_position FROM ev ORDER BY global_position DESC LIMIT 1
), idem AS (
	INSERT INTO idempotency_keys (actor_id, key, request_hash, stream_id, stream_version, transaction_id, position)
	SELECT $17::uuid, $18::text, $19::bytea, $20::uuid, $21::bigint, last.transaction_id, last.global_position
	FROM last WHERE $18::text IS NOT NULL
)
SELECT transaction_id::text, global_position FROM last`

// Append writes req atomically in one statement. It fails with ErrVersionConflict when a stream is no
// longer at its expected version, ErrReserved when a claimed reservation is taken, and
// ErrIdempotencyKeyUsed when the idempotency key exists. A nil error means the events are committed
// (or, with AppendTx, written into the caller's transaction).
func (s *Store) Append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	res, err := s.append(ctx, s.pool, req)
	if err == nil {
		s.signal.Appended(res.Position.GlobalPosition)
	}
	return res, err
}

// AppendTx writes req inside the caller's transaction tx. The caller commits, and must do every read
// before calling it (the events must be the transaction's first write). After committing, call
// Committed so local subscribers wake at once.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, req AppendRequest) (AppendResult, error) {
	return s.append(ctx, tx, req)
}

// Committed wakes local subscribers after a transaction that used AppendTx committed.
func (s *Store) Committed(res AppendResult) { s.signal.Appended(res.Position.GlobalPosition) }

func (s *Store) append(ctx context.Context, q Querier, req AppendRequest) (res AppendResult, err error) {
	start := time.Now()
	n := 0
	defer func() {
		if s.onAppend != nil {
			s.onAppend(n, time.Since(start), err)
		}
	}()
	var (
		types, names               []string
		ids, eventIDs              []uuid.UUID
		versions                   []int64
		schemaVersions             []int32
		datas                      [][]byte
		tenants                    []*uuid.UUID
		claimScopes, claimKeys     []string
		claimIDs                   []uuid.UUID
		releaseScopes, releaseKeys []string
		releaseIDs                 []uuid.UUID
	)
	res.Versions = map[uuid.UUID]int64{}
	for _, sa := range req.Streams {
		v := sa.ExpectedVersion
		for _, e := range sa.Events {
			typ, ver, data, err := s.registry.Encode(e, s.keys)
			if err != nil {
				return AppendResult{}, err
			}
			v++
			types = append(types, sa.StreamType)
			ids = append(ids, sa.StreamID)
			versions = append(versions, v)
			eventIDs = append(eventIDs, uuid.Must(uuid.NewV7()))
			names = append(names, typ)
			schemaVersions = append(schemaVersions, int32(ver))
			datas = append(datas, data)
			tenants = append(tenants, sa.TenantID)
		}
		res.Versions[sa.StreamID] = v
	}
	n = len(eventIDs)
	if n == 0 {
		return AppendResult{}, errors.New("append: no events")
	}
	for _, r := range req.Claim {
		claimScopes, claimKeys, claimIDs = append(claimScopes, r.Scope), append(claimKeys, r.Key), append(claimIDs, r.StreamID)
	}
	for _, r := range req.Release {
		releaseScopes, releaseKeys, releaseIDs = append(releaseScopes, r.Scope), append(releaseKeys, r.Key), append(releaseIDs, r.StreamID)
	}
	meta, err := json.Marshal(req.Metadata)
	if err != nil {
		return AppendResult{}, err
	}
	var (
		idemActor, idemStream *uuid.UUID
		idemKey               *string
		idemHash              []byte
		idemVersion           *int64
	)
	if k := req.Idempotency; k != nil {
		v := res.Versions[k.StreamID]
		idemActor, idemStream, idemKey, idemHash, idemVersion = &k.ActorID, &k.StreamID, &k.Key, k.RequestHash, &v
	}
	recordedAt := s.now().UTC().Truncate(time.Microsecond)
	var xid string
	err = q.QueryRow(ctx, appendSQL,
		types, ids, versions, eventIDs, names, schemaVersions, datas, tenants, meta, recordedAt,
		releaseScopes, releaseKeys, releaseIDs, claimScopes, claimKeys, claimIDs,
		idemActor, idemKey, idemHash, idemStream, idemVersion,
	).Scan(&xid, &res.Position.GlobalPosition)
	if err != nil {
		return AppendResult{}, mapAppendError(err)
	}
	if _, err := fmt.Sscan(xid, &res.Position.TransactionID); err != nil {
		return AppendResult{}, fmt.Errorf("append: transaction id %q: %w", xid, err)
	}
	return res, nil
}

func mapAppendError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == "events_stream_version_key",
			pgErr.Code == "AT001":
			return fmt.Errorf("append: %w", ErrVersionConflict)
		case pgErr.Code == "23505" && pgErr.ConstraintName == "reservations_pkey":
			return fmt.Errorf("append: %s: %w", pgErr.Detail, ErrReserved)
		case pgErr.Code == "23505" && pgErr.ConstraintName == "idempotency_keys_pkey":
			return fmt.Errorf("append: %w", ErrIdempotencyKeyUsed)
		}
	}
	return fmt.Errorf("append: %w", err)
}

// IdempotentResult is what an earlier command stored under an idempotency key.
type IdempotentResult struct {
	RequestHash   []byte
	StreamID      uuid.UUID
	StreamVersion int64
	Position      Position
}

// LookupIdempotency returns the result stored under (actor, key), or ok=false.
func (s *Store) LookupIdempotency(ctx context.Context, actor uuid.UUID, key string) (r IdempotentResult, ok bool, err error) {
	var xid string
	err = s.pool.QueryRow(ctx, `SELECT request_hash, stream_id, stream_version, transaction_id::text, position
		FROM idempotency_keys WHERE actor_id = $1 AND key = $2`, actor, key).
		Scan(&r.RequestHash, &r.StreamID, &r.StreamVersion, &xid, &r.Position.GlobalPosition)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("lookup idempotency key: %w", err)
	}
	_, err = fmt.Sscan(xid, &r.Position.TransactionID)
	return r, err == nil, err
}

// HashRequest returns the fingerprint stored with an idempotency key, to detect a key reused for a
// different request.
func HashRequest(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return h.Sum(nil)
}

const recordColumns = `global_position, transaction_id::text, stream_type, stream_id, stream_version, event_id,
	event_type, schema_version, data, metadata, tenant_id, recorded_at`

// ReadStream returns a stream's events from version 1 up to maxVersion (0: all), oldest first.
func (s *Store) ReadStream(ctx context.Context, streamID uuid.UUID, maxVersion int64) ([]Record, error) {
	if maxVersion <= 0 {
		maxVersion = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM events
		WHERE stream_id = $1 AND stream_version <= $2 ORDER BY stream_version`, streamID, maxVersion)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	return s.scanRecords(rows)
}

// ReadLog returns up to limit events after position in delivery order, never past the oldest
// transaction still in progress, so an event that commits late is not skipped by a reader that
// continues from the last returned position.
func (s *Store) ReadLog(ctx context.Context, after Position, limit int) ([]Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM events
		WHERE ((transaction_id = $1::text::xid8 AND global_position > $2) OR transaction_id > $1::text::xid8)
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id, global_position LIMIT $3`,
		fmt.Sprint(after.TransactionID), after.GlobalPosition, limit)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	return s.scanRecords(rows)
}

// Head returns the position of the last event that subscribers can currently read.
func (s *Store) Head(ctx context.Context) (Position, error) {
	var p Position
	var xid string
	err := s.pool.QueryRow(ctx, `SELECT transaction_id::text, global_position FROM events
		WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id DESC, global_position DESC LIMIT 1`).Scan(&xid, &p.GlobalPosition)
	if errors.Is(err, pgx.ErrNoRows) {
		return Position{}, nil
	}
	if err != nil {
		return p, fmt.Errorf("head: %w", err)
	}
	_, err = fmt.Sscan(xid, &p.TransactionID)
	return p, err
}

func (s *Store) scanRecords(rows pgx.Rows) ([]Record, error) {
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := s.scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) scanRecord(row pgx.Row) (Record, error) {
	var (
		r        Record
		xid, typ string
		ver      int
		data     []byte
		meta     []byte
	)
	if err := row.Scan(&r.Position.GlobalPosition, &xid, &r.StreamType, &r.StreamID, &r.StreamVersion,
		&r.EventID, &typ, &ver, &data, &meta, &r.TenantID, &r.RecordedAt); err != nil {
		return r, fmt.Errorf("scan event: %w", err)
	}
	if _, err := fmt.Sscan(xid, &r.Position.TransactionID); err != nil {
		return r, err
	}
	return r, s.DecodeRecord(&r, typ, ver, data, meta)
}

// DecodeRecord fills r's name, payload and metadata from a stored row's columns.
func (s *Store) DecodeRecord(r *Record, typ string, ver int, data, meta []byte) error {
	r.StoredName = fmt.Sprintf("%s.v%d", typ, ver)
	e, err := s.registry.Decode(typ, ver, data, s.keys)
	if err != nil {
		return fmt.Errorf("event %d: %w", r.Position.GlobalPosition, err)
	}
	r.Event, r.Name = e, e.EventName()
	if err := json.Unmarshal(meta, &r.Metadata); err != nil {
		return fmt.Errorf("event %d metadata: %w", r.Position.GlobalPosition, err)
	}
	r.RecordedAt = r.RecordedAt.UTC()
	return nil
}
