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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	fastjson "github.com/segmentio/encoding/json"

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

	statements sync.Map // appendShape -> SQL text
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
	recordedAt := s.now().UTC().Truncate(time.Microsecond)
	var args []any
	res.Versions = map[uuid.UUID]int64{}
	for _, sa := range req.Streams {
		md := req.Metadata
		md.TenantID = sa.TenantID
		meta, err := json.Marshal(md)
		if err != nil {
			return AppendResult{}, err
		}
		v := sa.ExpectedVersion
		for _, e := range sa.Events {
			typ, ver, data, err := s.registry.Encode(e, s.keys)
			if err != nil {
				return AppendResult{}, err
			}
			v++
			n++
			args = append(args, sa.StreamType, uuidParam(sa.StreamID), v, uuidParam(uuid.Must(uuid.NewV7())),
				typ, int32(ver), string(data), string(meta), nullUUIDParam(sa.TenantID), recordedAt)
		}
		res.Versions[sa.StreamID] = v
	}
	if n == 0 {
		return AppendResult{}, errors.New("append: no events")
	}
	if n > MaxAppendEvents {
		return AppendResult{}, fmt.Errorf("append: %d events; at most %d fit one statement", n, MaxAppendEvents)
	}
	for _, r := range req.Release {
		args = append(args, r.Scope, r.Key, uuidParam(r.StreamID))
	}
	for _, r := range req.Claim {
		args = append(args, r.Scope, r.Key, uuidParam(r.StreamID))
	}
	if k := req.Idempotency; k != nil {
		args = append(args, uuidParam(k.ActorID), k.Key, k.RequestHash, uuidParam(k.StreamID), res.Versions[k.StreamID])
	}
	sql := s.appendSQL(appendShape{events: n, releases: len(req.Release), claims: len(req.Claim), idempotent: req.Idempotency != nil})
	// The statement returns the transaction id and position of its last event: one row, or, for a plain
	// INSERT (no reservations, no key), one row per event; the highest position is the last event.
	var xid string
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return AppendResult{}, mapAppendError(err)
	}
	for rows.Next() {
		var x string
		var pos int64
		if err := rows.Scan(&x, &pos); err != nil {
			rows.Close()
			return AppendResult{}, mapAppendError(err)
		}
		if pos > res.Position.GlobalPosition {
			xid, res.Position.GlobalPosition = x, pos
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return AppendResult{}, mapAppendError(err)
	}
	if res.Position.TransactionID, err = strconv.ParseUint(xid, 10, 64); err != nil {
		return AppendResult{}, fmt.Errorf("append: transaction id %q: %w", xid, err)
	}
	return res, nil
}

// MaxAppendEvents bounds one append: each event takes 10 of a statement's 65,535 parameters.
const MaxAppendEvents = 6000

// appendShape is what an append statement's text depends on: every value is a parameter.
type appendShape struct {
	events, releases, claims int
	idempotent               bool
}

// appendSQL returns the statement for an append of the given shape, built once per shape. It writes
// events, reservations and the idempotency row in one round trip, atomic without BEGIN/COMMIT. Parts
// with nothing to write are left out and every value is a scalar parameter, so the common append is a
// small statement that each connection prepares once. Every read happens before it, so the events
// INSERT is the transaction's first write and its transaction id orders it after whatever the command
// read. Parameters come in this order: 10 per event, 3 per release, 3 per claim, 5 for the key.
func (s *Store) appendSQL(shape appendShape) string {
	if q, ok := s.statements.Load(shape); ok {
		return q.(string)
	}
	var b strings.Builder
	p := 0
	next := func() string { p++; return "$" + strconv.Itoa(p) }
	plain := shape.releases == 0 && shape.claims == 0 && !shape.idempotent
	if !plain {
		b.WriteString("WITH ev AS (\n")
	}
	b.WriteString(`INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version,
	                    data, metadata, tenant_id, recorded_at)
	VALUES `)
	for i := 0; i < shape.events; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		// prev_hash and hash are set by the chain trigger.
		fmt.Fprintf(&b, "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s)",
			next(), next(), next(), next(), next(), next(), next(), next(), next(), next())
	}
	if plain {
		// The common append: one INSERT, no CTE.
		b.WriteString(`
	RETURNING transaction_id::text, global_position`)
		return s.keep(shape, b.String())
	}
	b.WriteString(`
	RETURNING global_position, transaction_id
), last AS (
	SELECT transaction_id, global_position FROM ev ORDER BY global_position DESC LIMIT 1
)`)
	if shape.releases > 0 {
		b.WriteString(`, released AS (
	DELETE FROM reservations WHERE (scope, key, stream_id) IN (`)
		for i := 0; i < shape.releases; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%s::text, %s::text, %s::uuid)", next(), next(), next())
		}
		b.WriteString("))")
	}
	if shape.claims > 0 {
		b.WriteString(`, claimed AS (
	INSERT INTO reservations (scope, key, stream_id) VALUES `)
		for i := 0; i < shape.claims; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%s, %s, %s)", next(), next(), next())
		}
		b.WriteString(")")
	}
	if shape.idempotent {
		fmt.Fprintf(&b, `, idem AS (
	INSERT INTO idempotency_keys (actor_id, key, request_hash, stream_id, stream_version, transaction_id, position)
	SELECT %s::uuid, %s::text, %s::bytea, %s::uuid, %s::bigint, last.transaction_id, last.global_position FROM last
)`, next(), next(), next(), next(), next())
	}
	b.WriteString(`
SELECT transaction_id::text, global_position FROM last`)
	return s.keep(shape, b.String())
}

// keep caches the statement of a common shape; rare (large) shapes are not kept.
func (s *Store) keep(shape appendShape, sql string) string {
	if shape.events > 64 || shape.releases > 16 || shape.claims > 16 {
		return sql
	}
	q, _ := s.statements.LoadOrStore(shape, sql)
	return q.(string)
}

func uuidParam(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

func nullUUIDParam(id *uuid.UUID) pgtype.UUID {
	if id == nil {
		return pgtype.UUID{}
	}
	return uuidParam(*id)
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

// recordColumns are the columns scanRecord reads. The text form of transaction_id has its own name:
// an ORDER BY transaction_id must mean the xid8 column (numeric order, the delivery index), never an
// output column of the same name holding text, which would sort '10' before '9' and scan the table.
const recordColumns = `global_position, transaction_id::text AS transaction_xid, stream_type, stream_id, stream_version, event_id,
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

// ReadStreamAfter returns up to limit of a stream's events with a version above afterVersion, oldest
// first (limit <= 0: all of them).
func (s *Store) ReadStreamAfter(ctx context.Context, streamID uuid.UUID, afterVersion int64, limit int) ([]Record, error) {
	if limit <= 0 {
		limit = 1<<31 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM events
		WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version LIMIT $3`, streamID, afterVersion, limit)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	return s.scanRecords(rows)
}

// ReadLog returns up to limit events after position in delivery order, never past the oldest
// transaction still in progress, so an event that commits late is not skipped by a reader that
// continues from the last returned position.
func (s *Store) ReadLog(ctx context.Context, after Position, limit int) ([]Record, error) {
	var out []Record
	_, err := s.EachLogRaw(ctx, after, limit, func(r *RawRecord) error {
		rec, err := s.Decode(r)
		out = append(out, rec)
		return err
	})
	return out, err
}

// RawRecord is an event as stored, its payload and metadata not decoded: what a reader that applies
// some events straight from the events table (in SQL) needs to route them, and what Decode turns into
// a Record for the others.
type RawRecord struct {
	Record  // Event, Name and Metadata are not set
	Type    string
	Version int
	Data    []byte
	Meta    []byte
}

// EachLogRaw calls fn with each of up to limit events after position after, undecoded, in ReadLog's
// order and under its rule, and returns how many it read. Data and Meta are only valid during the
// call: decode (Decode) or copy what is kept. Nothing is allocated per event for them.
func (s *Store) EachLogRaw(ctx context.Context, after Position, limit int, fn func(*RawRecord) error) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM events
		WHERE (transaction_id, global_position) > ($1::text::xid8, $2::bigint)
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY events.transaction_id, global_position LIMIT $3`,
		fmt.Sprint(after.TransactionID), after.GlobalPosition, limit)
	if err != nil {
		return 0, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	n := 0
	var r RawRecord
	var names typeNames
	for rows.Next() {
		var data, meta pgtype.DriverBytes
		if err := scanRawInto(rows, &r, &data, &meta, &names); err != nil {
			return n, err
		}
		r.Data, r.Meta = data, meta
		n++
		if err := fn(&r); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read log: %w", err)
	}
	return n, nil
}

// Decode decodes a raw record's payload (upcast, personal data opened) and metadata.
func (s *Store) Decode(r *RawRecord) (Record, error) {
	rec := r.Record
	return rec, s.decode(&rec, r.Type, r.Version, r.Data, r.Meta)
}

// Head returns the position of the last event that subscribers can currently read.
func (s *Store) Head(ctx context.Context) (Position, error) {
	var p Position
	var xid string
	err := s.pool.QueryRow(ctx, `SELECT transaction_id::text, global_position FROM events
		WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY events.transaction_id DESC, global_position DESC LIMIT 1`).Scan(&xid, &p.GlobalPosition)
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
	r, err := scanRaw(row)
	if err != nil {
		return r.Record, err
	}
	return s.Decode(&r)
}

// scanRaw reads a row of recordColumns.
func scanRaw(row pgx.Row) (RawRecord, error) {
	var r RawRecord
	return r, scanRawInto(row, &r, &r.Data, &r.Meta, nil)
}

// scanRawInto reads a row of recordColumns into r, its payload and metadata into data and meta.
// With names, the type names are interned there (a long read then does not allocate them per event).
func scanRawInto(row pgx.Row, r *RawRecord, data, meta any, names *typeNames) error {
	var xid, streamType, eventType pgtype.DriverBytes
	// pgtype.UUID, not uuid.UUID: pgx scans the latter (an sql.Scanner) through its text form.
	var streamID, eventID, tenantID pgtype.UUID
	if err := row.Scan(&r.Position.GlobalPosition, &xid, &streamType, &streamID, &r.StreamVersion,
		&eventID, &eventType, &r.Version, data, meta, &tenantID, &r.RecordedAt); err != nil {
		return fmt.Errorf("scan event: %w", err)
	}
	r.StreamID, r.EventID, r.TenantID = streamID.Bytes, eventID.Bytes, nil
	if tenantID.Valid {
		t := uuid.UUID(tenantID.Bytes)
		r.TenantID = &t
	}
	if names != nil {
		r.StreamType, r.Type = names.intern(streamType), names.intern(eventType)
		r.StoredName = names.stored(r.Type, r.Version)
	} else {
		r.StreamType, r.Type = string(streamType), string(eventType)
		r.StoredName = r.Type + ".v" + strconv.Itoa(r.Version)
	}
	var err error
	if r.Position.TransactionID, err = strconv.ParseUint(string(xid), 10, 64); err != nil {
		return fmt.Errorf("scan event: transaction id %q: %w", xid, err)
	}
	return nil
}

// typeNames interns the few distinct stream types, event types and stored names of a read.
type typeNames struct {
	names    map[string]string
	versions map[typeVersion]string
}

type typeVersion struct {
	typ string
	ver int
}

func (n *typeNames) intern(b []byte) string {
	if s, ok := n.names[string(b)]; ok {
		return s
	}
	if n.names == nil {
		n.names = map[string]string{}
	}
	s := string(b)
	n.names[s] = s
	return s
}

// stored is the name an event of type typ and schema version ver is stored under ("note.created.v1").
func (n *typeNames) stored(typ string, ver int) string {
	k := typeVersion{typ, ver}
	if s, ok := n.versions[k]; ok {
		return s
	}
	if n.versions == nil {
		n.versions = map[typeVersion]string{}
	}
	s := typ + ".v" + strconv.Itoa(ver)
	n.versions[k] = s
	return s
}

// DecodeRecord fills r's name, payload and metadata from a stored row's columns.
func (s *Store) DecodeRecord(r *Record, typ string, ver int, data, meta []byte) error {
	r.StoredName = typ + ".v" + strconv.Itoa(ver)
	return s.decode(r, typ, ver, data, meta)
}

// decode is DecodeRecord without setting the stored name (a scanned row has it).
func (s *Store) decode(r *Record, typ string, ver int, data, meta []byte) error {
	e, err := s.registry.Decode(typ, ver, data, s.keys)
	if err != nil {
		return fmt.Errorf("event %d: %w", r.Position.GlobalPosition, err)
	}
	r.Event, r.Name = e, e.EventName()
	if err := fastjson.Unmarshal(meta, &r.Metadata); err != nil {
		return fmt.Errorf("event %d metadata: %w", r.Position.GlobalPosition, err)
	}
	r.RecordedAt = r.RecordedAt.UTC()
	return nil
}
