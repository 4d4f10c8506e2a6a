package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/eventstore"
)

// auditLog is a small log of three interleaved streams, positions 1..9 (A1 B1 C1 A2 B2 C2 A3 B3 C3),
// sealed four events at a time: seal 1 = 1..4, seal 2 = 5..8, seal 3 = 9.
type auditLog struct {
	fixture
	a, b, c uuid.UUID
}

func newAuditLog(t *testing.T) auditLog {
	t.Helper()
	l := auditLog{fixture: newFixture(t), a: uuid.New(), b: uuid.New(), c: uuid.New()}
	for v := int64(0); v < 3; v++ {
		for _, s := range []uuid.UUID{l.a, l.b, l.c} {
			appendN(t, l.store, s, v, int(v)+1)
		}
	}
	sealer := &eventstore.Sealer{Pool: l.pool, MaxEvents: 4}
	n, err := sealer.SealOnce(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("sealed %d (want 3): %v", n, err)
	}
	rep := verify(t, l)
	if !rep.OK || rep.CheckedEvents != 9 || rep.CheckedSeals != 3 || rep.CheckedStreams != 3 || rep.SealedThrough != 9 || rep.UnsealedEvents != 0 {
		t.Fatalf("healthy log: %+v", rep)
	}
	return l
}

func verify(t *testing.T, l auditLog) eventstore.VerifyReport {
	t.Helper()
	rep, err := eventstore.Verify(context.Background(), l.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// tamper runs statements as the superuser with triggers off (session_replication_role = replica), as
// someone with direct access to the database would.
func tamper(t *testing.T, l auditLog, sqls ...string) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		for _, s := range sqls {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func expectBroken(t *testing.T, rep eventstore.VerifyReport, kind string, position int64) eventstore.Broken {
	t.Helper()
	if rep.OK || rep.FirstBroken == nil {
		t.Fatalf("tampering not found: %+v", rep)
	}
	fb := *rep.FirstBroken
	if fb.Kind != kind || fb.Position != position {
		t.Fatalf("first broken = %s at %d (%s), want %s at %d; all: %+v", fb.Kind, fb.Position, fb.Reason, kind, position, rep.Broken)
	}
	t.Logf("found: %s", fb.Reason)
	return fb
}

func TestVerifyFindsEveryTampering(t *testing.T) {
	t.Run("edited content", func(t *testing.T) {
		l := newAuditLog(t)
		tamper(t, l, `UPDATE events SET data = '{"n": 99}' WHERE stream_id = '`+l.a.String()+`' AND stream_version = 2`)
		fb := expectBroken(t, verify(t, l), eventstore.BrokenEdited, 4)
		if *fb.StreamID != l.a || fb.StreamVersion != 2 {
			t.Fatalf("wrong event: %+v", fb)
		}
	})
	t.Run("edited and rehashed", func(t *testing.T) {
		// A careful forger recomputes the edited event's hash and every later link of its stream: the
		// stream chain holds, the seal does not.
		l := newAuditLog(t)
		tamper(t, l, `UPDATE events SET data = '{"n": 99}' WHERE global_position = 4`,
			`UPDATE events e SET hash = sha256(e.prev_hash || events_canonical(e)) WHERE global_position = 4`,
			`UPDATE events e SET prev_hash = p.hash FROM events p WHERE e.global_position = 7 AND p.global_position = 4`,
			`UPDATE events e SET hash = sha256(e.prev_hash || events_canonical(e)) WHERE global_position = 7`)
		rep := verify(t, l)
		expectBroken(t, rep, eventstore.BrokenSealMismatch, 4)
		// Seal 2 covers the rewritten A3 (position 7).
		if rep.BrokenCount != 2 || rep.Broken[1].Kind != eventstore.BrokenSealMismatch || rep.Broken[1].Seal != 2 {
			t.Fatalf("the stream chains were rewritten consistently; only the seals should object: %+v", rep.Broken)
		}
	})
	t.Run("deleted event", func(t *testing.T) {
		l := newAuditLog(t)
		tamper(t, l, `DELETE FROM events WHERE global_position = 5`) // B2
		rep := verify(t, l)
		// B3 at position 8 follows the gap; seal 2 (5..8) also counts one event less.
		fb := expectBroken(t, rep, eventstore.BrokenMissing, 8)
		if *fb.StreamID != l.b || fb.StreamVersion != 3 {
			t.Fatalf("wrong event: %+v", fb)
		}
		if rep.Broken[1].Kind != eventstore.BrokenSealEventsMissing || rep.Broken[1].Seal != 2 {
			t.Fatalf("seal 2 should miss an event: %+v", rep.Broken)
		}
	})
	t.Run("deleted last event of a stream", func(t *testing.T) {
		l := newAuditLog(t)
		tamper(t, l, `DELETE FROM events WHERE global_position = 9`) // C3: no successor in its stream
		expectBroken(t, verify(t, l), eventstore.BrokenSealEventsMissing, 9)
	})
	t.Run("reordered within a stream", func(t *testing.T) {
		l := newAuditLog(t)
		s := l.a.String()
		tamper(t, l, `UPDATE events SET stream_version = 100 WHERE stream_id = '`+s+`' AND stream_version = 2`,
			`UPDATE events SET stream_version = 2 WHERE stream_id = '`+s+`' AND stream_version = 3`,
			`UPDATE events SET stream_version = 3 WHERE stream_id = '`+s+`' AND stream_version = 100`)
		fb := expectBroken(t, verify(t, l), eventstore.BrokenReordered, 4)
		if *fb.StreamID != l.a || fb.StreamVersion != 3 {
			t.Fatalf("wrong event: %+v", fb)
		}
	})
	t.Run("reordered across streams", func(t *testing.T) {
		// A3 (7) and B3 (8) swap global positions: each stream is still in order; the seal is not.
		l2 := newAuditLog(t)
		tamper(t, l2, `CREATE TEMP TABLE moved AS SELECT * FROM events WHERE global_position IN (7, 8)`,
			`DELETE FROM events WHERE global_position IN (7, 8)`,
			`UPDATE moved SET global_position = 15 - global_position`,
			`INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM moved`)
		rep := verify(t, l2)
		expectBroken(t, rep, eventstore.BrokenSealMismatch, 8)
		if rep.BrokenCount != 1 {
			t.Fatalf("only the seal can see a reordering across streams: %+v", rep.Broken)
		}
	})
	t.Run("replaced event", func(t *testing.T) {
		// C1 (position 3) is replaced by a forged first event of a new stream with a valid hash.
		l := newAuditLog(t)
		tamper(t, l, `CREATE TEMP TABLE forged AS SELECT * FROM events WHERE global_position = 3`,
			`UPDATE forged SET stream_id = gen_random_uuid(), event_id = gen_random_uuid(), data = '{"n": 7}'`,
			`DELETE FROM events WHERE global_position = 3`,
			`INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM forged`,
			`UPDATE events e SET hash = sha256(e.prev_hash || events_canonical(e)) WHERE global_position = 3`)
		rep := verify(t, l)
		expectBroken(t, rep, eventstore.BrokenSealMismatch, 4)
		if rep.Broken[1].Kind != eventstore.BrokenMissing || *rep.Broken[1].StreamID != l.c {
			t.Fatalf("C's chain should miss its version 1: %+v", rep.Broken)
		}
	})
	t.Run("inserted event", func(t *testing.T) {
		// A rolled-back append leaves position 2 unused; a forged event is slipped into it after sealing.
		f := newFixture(t)
		ctx := context.Background()
		appendN(t, f.store, uuid.New(), 0, 1)
		tx, err := f.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.AppendTx(ctx, tx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: "test",
			StreamID: uuid.New(), Events: []domain.Event{Counted{2}}}}}); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback(ctx)
		appendN(t, f.store, uuid.New(), 0, 3)
		if _, err := (&eventstore.Sealer{Pool: f.pool}).SealOnce(ctx); err != nil {
			t.Fatal(err)
		}
		l := auditLog{fixture: f}
		if rep := verify(t, l); !rep.OK || rep.CheckedEvents != 2 || rep.SealedThrough != 3 {
			t.Fatalf("%+v", rep)
		}
		tamper(t, l, `CREATE TEMP TABLE forged AS SELECT * FROM events WHERE global_position = 3`,
			`UPDATE forged SET global_position = 2, stream_id = gen_random_uuid(), event_id = gen_random_uuid()`,
			`INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM forged`,
			`UPDATE events e SET hash = sha256(e.prev_hash || events_canonical(e)) WHERE global_position = 2`)
		expectBroken(t, verify(t, l), eventstore.BrokenSealEventsAdded, 3)
	})
	t.Run("seal altered", func(t *testing.T) {
		l := newAuditLog(t)
		tamper(t, l, `UPDATE audit_seals SET hash = sha256(hash) WHERE seq = 1`)
		fb := expectBroken(t, verify(t, l), eventstore.BrokenSealEdited, 4)
		if fb.Seal != 1 {
			t.Fatalf("wrong seal: %+v", fb)
		}
	})
	t.Run("seal deleted", func(t *testing.T) {
		l := newAuditLog(t)
		tamper(t, l, `DELETE FROM audit_seals WHERE seq = 2`)
		fb := expectBroken(t, verify(t, l), eventstore.BrokenSealMissing, 9)
		if fb.Seal != 3 {
			t.Fatalf("wrong seal: %+v", fb)
		}
	})
	t.Run("last seal altered", func(t *testing.T) {
		l := newAuditLog(t)
		tamper(t, l, `UPDATE audit_seals SET hash = sha256(hash) WHERE seq = 3`)
		expectBroken(t, verify(t, l), eventstore.BrokenSealMismatch, 9)
	})
	t.Run("newest seals removed or rewritten", func(t *testing.T) {
		// Without an anchor, removing the last seal leaves a shorter, consistent chain: only the age of
		// the unsealed events hints at it. An anchor recorded earlier catches it.
		l := newAuditLog(t)
		rep := verify(t, l)
		anchor, err := eventstore.ParseAnchor(rep.LastSeal.Anchor)
		if err != nil || rep.LastSeal.Seq != 3 || anchor.Seq != 3 {
			t.Fatalf("last seal %+v: %v", rep.LastSeal, err)
		}
		tamper(t, l, `DELETE FROM audit_seals WHERE seq = 3`)
		rep = verify(t, l)
		if !rep.OK || rep.UnsealedEvents != 1 || rep.OldestUnsealedAt == nil {
			t.Fatalf("without an anchor: %+v", rep)
		}
		withAnchor := func() eventstore.VerifyReport {
			rep, err := eventstore.VerifyWith(context.Background(), l.pool, eventstore.VerifyOptions{Anchors: []eventstore.Anchor{anchor}})
			if err != nil {
				t.Fatal(err)
			}
			return rep
		}
		fb := expectBroken(t, withAnchor(), eventstore.BrokenAnchor, 8)
		if fb.Seal != 3 {
			t.Fatalf("wrong seal: %+v", fb)
		}
		// The forger edits C3 and reseals it consistently: the chain holds; the anchor does not.
		tamper(t, l, `UPDATE events SET data = '{"n": 99}' WHERE global_position = 9`,
			`UPDATE events e SET hash = sha256(e.prev_hash || events_canonical(e)) WHERE global_position = 9`)
		if _, err := (&eventstore.Sealer{Pool: l.pool}).SealOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rep := verify(t, l); !rep.OK || rep.CheckedSeals != 3 {
			t.Fatalf("the resealed log should look intact without an anchor: %+v", rep)
		}
		expectBroken(t, withAnchor(), eventstore.BrokenAnchor, 9)
	})
	t.Run("unsealed tail", func(t *testing.T) {
		l := newAuditLog(t)
		appendN(t, l.store, l.a, 3, 4, 5)
		rep := verify(t, l)
		if !rep.OK || rep.UnsealedEvents != 2 || rep.SealedThrough != 9 {
			t.Fatalf("tail: %+v", rep)
		}
		tamper(t, l, `UPDATE events SET metadata = '{"actor_id": "00000000-0000-0000-0000-000000000001"}' WHERE global_position = 11`)
		fb := expectBroken(t, verify(t, l), eventstore.BrokenEdited, 11)
		if *fb.StreamID != l.a || fb.StreamVersion != 5 {
			t.Fatalf("wrong event: %+v", fb)
		}
	})
}

func TestParseAnchor(t *testing.T) {
	good := "12:" + strings.Repeat("ab", 32)
	if a, err := eventstore.ParseAnchor(good); err != nil || a.Seq != 12 || len(a.Hash) != 32 {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range []string{"", "12", "x:" + strings.Repeat("ab", 32), "0:" + strings.Repeat("ab", 32), "3:abcd", "3:" + strings.Repeat("zz", 32)} {
		if _, err := eventstore.ParseAnchor(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The application role can neither change nor remove a seal, and the owner is stopped by the trigger.
func TestSealsAreAppendOnly(t *testing.T) {
	l := newAuditLog(t)
	ctx := context.Background()
	for _, role := range []string{"atlas_api", "atlas_projector", ""} {
		for _, stmt := range []string{`UPDATE audit_seals SET hash = sha256(hash) WHERE seq = 1`, `DELETE FROM audit_seals WHERE seq = 3`, `TRUNCATE audit_seals`} {
			err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
				if role != "" {
					if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+role); err != nil {
						return err
					}
				}
				_, err := tx.Exec(ctx, stmt)
				return err
			})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && pgErr.Code != "AT002") {
				t.Errorf("%q as %q: %v", stmt, role, err)
			}
		}
	}
	// A seal that does not continue the chain is refused, even from the owner.
	_, err := l.pool.Exec(ctx, `INSERT INTO audit_seals (seq, from_position, to_position, event_count, prev_hash, hash)
		VALUES (4, 5, 20, 1, sha256('x'), sha256('y'))`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "AT003" {
		t.Fatalf("a broken seal was accepted: %v", err)
	}
	if rep := verify(t, l); !rep.OK {
		t.Fatalf("%+v", rep)
	}
}

// Verification and sealing run while writers append (some in transactions that stay open a while,
// some rolled back, leaving gaps): no report is ever a false alarm, and at the end every event is
// sealed exactly once.
func TestVerifyUnderConcurrentAppends(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var appended atomic.Int64
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := uuid.New()
			var v int64
			for i := 0; ctx.Err() == nil; i++ {
				req := eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream,
					ExpectedVersion: v, Events: []domain.Event{Counted{i}, Counted{i + 1}}}}}
				switch i % 5 {
				case 3: // a slow transaction: its positions are taken long before it commits
					err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
						if _, err := f.store.AppendTx(context.Background(), tx, req); err != nil {
							return err
						}
						time.Sleep(30 * time.Millisecond)
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				case 4: // rolled back: a gap in the positions
					tx, err := f.pool.Begin(context.Background())
					if err == nil {
						_, err = f.store.AppendTx(context.Background(), tx, req)
						_ = tx.Rollback(context.Background())
					}
					if err != nil {
						t.Error(err)
						return
					}
					continue
				default:
					if _, err := f.store.Append(context.Background(), req); err != nil {
						t.Error(err)
						return
					}
				}
				v += 2
				appended.Add(2)
			}
		}()
	}
	// Two sealers, as two processes would run.
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &eventstore.Sealer{Pool: f.pool, MaxEvents: 50}
			for ctx.Err() == nil {
				if _, err := s.SealOnce(ctx); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	verifies := 0
	for ctx.Err() == nil {
		rep, err := eventstore.Verify(ctx, f.pool, nil)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			t.Fatal(err)
		}
		if !rep.OK {
			t.Fatalf("false alarm on a healthy log: %+v", rep)
		}
		verifies++
	}
	wg.Wait()
	n, err := (&eventstore.Sealer{Pool: f.pool}).SealOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := eventstore.Verify(context.Background(), f.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.UnsealedEvents != 0 || rep.CheckedEvents != appended.Load() {
		t.Fatalf("final (sealed %d more): %+v; appended %d", n, rep, appended.Load())
	}
	t.Logf("%d verifications during %d appended events, %d seals", verifies, appended.Load(), rep.CheckedSeals)
}

// Sealing relies on every identity value being taken under the lock on events: a sequence that
// hands out values in batches per session makes the sealer refuse.
func TestSealerRefusesACachedSequence(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	appendN(t, f.store, uuid.New(), 0, 1)
	if _, err := f.pool.Exec(ctx, `DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s CACHE 20', pg_get_serial_sequence('events', 'global_position')); END $$`); err != nil {
		t.Fatal(err)
	}
	n, err := (&eventstore.Sealer{Pool: f.pool}).SealOnce(ctx)
	if err == nil || n != 0 || !strings.Contains(err.Error(), "CACHE 1") {
		t.Fatalf("sealed %d with a cached sequence: %v", n, err)
	}
}
