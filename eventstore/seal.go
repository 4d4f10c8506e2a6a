package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Seal is one row of audit_seals: a link in the chain of seals over the global order. It covers the
// events with FromPosition < global_position <= ToPosition.
type Seal struct {
	Seq          int64
	FromPosition int64
	ToPosition   int64
	EventCount   int64
	PrevHash     []byte
	Hash         []byte
	SealedAt     time.Time
}

// sealHasher computes a seal's hash: sha256(prev || for each event in global_position order: the
// position as 8 big-endian bytes, then the event's hash).
type sealHasher struct {
	h     hash.Hash
	count int64
	last  int64
	buf   [8]byte
}

func newSealHasher(prev []byte) *sealHasher {
	s := &sealHasher{h: sha256.New()}
	s.h.Write(prev)
	return s
}

func (s *sealHasher) add(position int64, eventHash []byte) {
	binary.BigEndian.PutUint64(s.buf[:], uint64(position))
	s.h.Write(s.buf[:])
	s.h.Write(eventHash)
	s.count++
	s.last = position
}

func (s *sealHasher) sum() []byte { return s.h.Sum(nil) }

// SealHash returns the hash of a seal over the given (position, event hash) pairs, in order.
func SealHash(prev []byte, positions []int64, hashes [][]byte) []byte {
	s := newSealHasher(prev)
	for i, p := range positions {
		s.add(p, hashes[i])
	}
	return s.sum()
}

// Sealer appends seals of the global order to audit_seals. Several processes may run one: an
// advisory lock lets one seal at a time, and the table's primary key and chain trigger refuse a
// second seal with the same number.
type Sealer struct {
	Pool *pgxpool.Pool
	// MaxEvents bounds the events one seal covers (default 10,000), so each sealing transaction is short.
	MaxEvents int
	// Wait bounds how long Seal waits for the transactions that were appending when it started
	// (default 5 s); the range they might still write into is sealed at a later call.
	Wait time.Duration
}

// sealLock is the advisory lock key sealers share ("atlas:audit_seals").
const sealLock int64 = 0x61746c6173736c

// Horizon returns a global position up to which the log is final: every position at or below it is
// either a committed event or will never be one. Identity values are taken before the inserting
// transaction commits, and (for a transaction's first insert) even before it has a transaction id,
// so neither the visible events nor pg_snapshot_xmin tell which low positions may still appear.
// Instead: read the sequence's high-water mark, note every transaction then holding the row-exclusive
// lock on events (any transaction that took a position holds it until it ends), and wait until all of
// them have ended. It returns ok=false if they did not end within wait. It refuses to work if the
// sequence hands out values in batches per session (CACHE above 1).
func Horizon(ctx context.Context, q Querier, wait time.Duration) (pos int64, ok bool, err error) {
	var last *int64
	var cache int64
	if err := q.QueryRow(ctx, `SELECT pg_sequence_last_value(s.seq), p.seqcache
		FROM (SELECT pg_get_serial_sequence('events', 'global_position')::regclass AS seq) s
		JOIN pg_sequence p ON p.seqrelid = s.seq`).
		Scan(&last, &cache); err != nil {
		return 0, false, fmt.Errorf("seal horizon: %w", err)
	}
	// A session that caches identity values could insert one below the high-water mark long after
	// taking it, without holding the lock meanwhile: the sealing argument needs CACHE 1 (the default).
	if cache != 1 {
		return 0, false, fmt.Errorf("seal horizon: the events identity sequence caches %d values per session; sealing needs CACHE 1", cache)
	}
	if last == nil {
		return 0, true, nil // no position handed out yet
	}
	var lockers []string
	if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks
		WHERE locktype = 'relation' AND relation = 'events'::regclass AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()`).Scan(&lockers); err != nil {
		return 0, false, fmt.Errorf("seal horizon: %w", err)
	}
	deadline := time.Now().Add(wait)
	for len(lockers) > 0 {
		if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(virtualxid), '{}') FROM pg_locks
			WHERE locktype = 'virtualxid' AND virtualxid = ANY($1::text[]) AND granted`, lockers).Scan(&lockers); err != nil {
			return 0, false, fmt.Errorf("seal horizon: %w", err)
		}
		if len(lockers) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, false, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return *last, true, nil
}

// SealOnce writes the seals that the final part of the log allows (each of at most MaxEvents events)
// and returns how many it wrote. It writes none when another process holds the sealing lock, when
// nothing new is final, or when the appending transactions did not end within Wait.
func (s *Sealer) SealOnce(ctx context.Context) (int, error) {
	maxEvents := s.MaxEvents
	if maxEvents <= 0 {
		maxEvents = 10000
	}
	wait := s.Wait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	horizon, ok, err := Horizon(ctx, s.Pool, wait)
	if err != nil || !ok {
		return 0, err
	}
	n := 0
	for {
		sealed, more, err := s.sealNext(ctx, horizon, maxEvents)
		if err != nil {
			return n, err
		}
		if sealed {
			n++
		}
		if !more {
			return n, nil
		}
	}
}

// sealNext writes the next seal up to horizon, in one transaction holding the sealing lock. more
// says whether final events beyond it remain.
func (s *Sealer) sealNext(ctx context.Context, horizon int64, maxEvents int) (sealed, more bool, err error) {
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, sealLock).Scan(&locked); err != nil {
			return err
		}
		if !locked {
			return nil
		}
		var seq, from int64
		prev := GenesisHash
		err := tx.QueryRow(ctx, `SELECT seq, to_position, hash FROM audit_seals ORDER BY seq DESC LIMIT 1`).Scan(&seq, &from, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if from >= horizon {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT global_position, hash FROM events
			WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position LIMIT $3`, from, horizon, maxEvents)
		if err != nil {
			return err
		}
		h := newSealHasher(prev)
		var pos int64
		var eh []byte
		_, err = pgx.ForEachRow(rows, []any{&pos, &eh}, func() error {
			h.add(pos, eh)
			return nil
		})
		if err != nil {
			return err
		}
		to := horizon
		if h.count == int64(maxEvents) {
			to, more = h.last, h.last < horizon
		}
		if h.count == 0 {
			// Only positions of transactions that rolled back: nothing to seal yet. The next seal
			// covers the gap.
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_seals (seq, from_position, to_position, event_count, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6)`, seq+1, from, to, h.count, prev, h.sum()); err != nil {
			return err
		}
		sealed = true
		return nil
	})
	if err != nil {
		return false, false, fmt.Errorf("seal: %w", err)
	}
	return sealed, more, nil
}

// Run seals every interval until ctx ends, logging failures through onError.
func (s *Sealer) Run(ctx context.Context, interval time.Duration, onError func(error)) {
	for {
		if _, err := s.SealOnce(ctx); err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Seals returns up to limit seals with a number above after, in order.
func Seals(ctx context.Context, q Querier, after int64, limit int) ([]Seal, error) {
	rows, err := q.Query(ctx, `SELECT seq, from_position, to_position, event_count, prev_hash, hash, sealed_at
		FROM audit_seals WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read seals: %w", err)
	}
	var out []Seal
	var s Seal
	_, err = pgx.ForEachRow(rows, []any{&s.Seq, &s.FromPosition, &s.ToPosition, &s.EventCount, &s.PrevHash, &s.Hash, &s.SealedAt}, func() error {
		s.SealedAt = s.SealedAt.UTC()
		out = append(out, s)
		return nil
	})
	return out, err
}
