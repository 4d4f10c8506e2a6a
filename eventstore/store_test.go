package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/internal/pgtest"
)

// Counted is a test event.
type Counted struct {
	N int `json:"n"`
}

func (Counted) EventName() string { return "test.counted.v1" }

// Profiled carries personal data.
type Profiled struct {
	Subject uuid.UUID `json:"subject"`
	Email   string    `json:"email"`
}

func (Profiled) EventName() string { return "test.profiled.v1" }

func (p *Profiled) PersonalData() (uuid.UUID, []*string) { return p.Subject, []*string{&p.Email} }

type fixture struct {
	pool  *pgxpool.Pool
	store *eventstore.Store
	keys  *eventstore.SubjectKeys
	reg   *eventstore.Registry
}

func newFixture(t *testing.T) fixture {
	pool := pgtest.NewPool(t)
	reg := eventstore.NewRegistry()
	eventstore.Register[Counted](reg)
	eventstore.Register[Profiled](reg)
	keys := eventstore.NewSubjectKeys(pool, time.Minute)
	return fixture{pool: pool, store: eventstore.New(pool, reg, keys, eventstore.Options{}), keys: keys, reg: reg}
}

func appendN(t *testing.T, s *eventstore.Store, stream uuid.UUID, expected int64, ns ...int) eventstore.AppendResult {
	t.Helper()
	evs := make([]domain.Event, len(ns))
	for i, n := range ns {
		evs[i] = Counted{N: n}
	}
	res, err := s.Append(context.Background(), eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, ExpectedVersion: expected, Events: evs}},
	})
	if err != nil {
		t.Fatalf("append to %s at %d: %v", stream, expected, err)
	}
	return res
}

func TestAppendAndReadStream(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	stream, tenant, actor := uuid.New(), uuid.New(), uuid.New()
	res, err := f.store.Append(ctx, eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, TenantID: &tenant,
			Events: []domain.Event{Counted{1}, Counted{2}, Counted{3}}}},
		Metadata: eventstore.Metadata{ActorID: &actor, CorrelationID: "corr", CausationID: "cause", CommandID: "cmd", RequestID: "req"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Versions[stream]; got != 3 {
		t.Fatalf("version after append = %d, want 3", got)
	}
	recs, err := f.store.ReadStream(ctx, stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("read %d events, want 3", len(recs))
	}
	for i, r := range recs {
		if r.StreamVersion != int64(i+1) || r.Event.(Counted).N != i+1 || r.Name != "test.counted.v1" {
			t.Errorf("event %d = v%d %v %s", i, r.StreamVersion, r.Event, r.Name)
		}
		if r.TenantID == nil || *r.TenantID != tenant || r.Metadata.TenantID == nil || *r.Metadata.TenantID != tenant || *r.Metadata.ActorID != actor || r.Metadata.CorrelationID != "corr" ||
			r.Metadata.CausationID != "cause" || r.Metadata.CommandID != "cmd" || r.Metadata.RequestID != "req" {
			t.Errorf("event %d metadata = %+v tenant %v", i, r.Metadata, r.TenantID)
		}
		if r.Position.TransactionID != res.Position.TransactionID {
			t.Errorf("event %d in transaction %d, want the append's %d", i, r.Position.TransactionID, res.Position.TransactionID)
		}
	}
	if recs[2].Position != res.Position {
		t.Errorf("append position = %v, want the last event's %v", res.Position, recs[2].Position)
	}
	upTo2, _ := f.store.ReadStream(ctx, stream, 2)
	if len(upTo2) != 2 {
		t.Errorf("ReadStream(max 2) = %d events", len(upTo2))
	}
}

func TestConcurrentAppendsAtSameVersionExactlyOneWins(t *testing.T) {
	f := newFixture(t)
	stream := uuid.New()
	appendN(t, f.store, stream, 0, 1)
	const writers = 16
	var wg sync.WaitGroup
	errs := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = f.store.Append(context.Background(), eventstore.AppendRequest{
				Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, ExpectedVersion: 1, Events: []domain.Event{Counted{100 + i}}}},
			})
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, eventstore.ErrVersionConflict):
			if domain.ErrorCode(err) != domain.CodeVersionConflict {
				t.Errorf("writer %d: code %s", i, domain.ErrorCode(err))
			}
		default:
			t.Errorf("writer %d: %v, want ErrVersionConflict", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won, want exactly 1", wins)
	}
	recs, _ := f.store.ReadStream(context.Background(), stream, 0)
	if len(recs) != 2 {
		t.Fatalf("stream has %d events, want 2", len(recs))
	}
}

func TestExpectedVersionAheadOfStreamIsAConflict(t *testing.T) {
	f := newFixture(t)
	stream := uuid.New()
	appendN(t, f.store, stream, 0, 1)
	_, err := f.store.Append(context.Background(), eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, ExpectedVersion: 5, Events: []domain.Event{Counted{9}}}},
	})
	if !errors.Is(err, eventstore.ErrVersionConflict) {
		t.Fatalf("append with a gap: %v, want ErrVersionConflict", err)
	}
}

func TestReservationsAreAtomicWithEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := uuid.New(), uuid.New()
	claim := func(stream uuid.UUID, key string, release ...eventstore.Reservation) error {
		_, err := f.store.Append(ctx, eventstore.AppendRequest{
			Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, ExpectedVersion: countEvents(t, f.pool, stream), Events: []domain.Event{Counted{1}}}},
			Claim:   []eventstore.Reservation{{Scope: "test.name", Key: key, StreamID: stream}},
			Release: release,
		})
		return err
	}
	if err := claim(a, "x"); err != nil {
		t.Fatal(err)
	}
	err := claim(b, "x")
	if !errors.Is(err, eventstore.ErrReserved) || domain.ErrorCode(err) != domain.CodeConflict {
		t.Fatalf("second claim of x: %v, want ErrReserved", err)
	}
	if n := countEvents(t, f.pool, b); n != 0 {
		t.Fatalf("a refused claim appended %d events", n)
	}
	// a moves from x to y; then b can take x.
	if err := claim(a, "y", eventstore.Reservation{Scope: "test.name", Key: "x", StreamID: a}); err != nil {
		t.Fatal(err)
	}
	if err := claim(b, "x"); err != nil {
		t.Fatalf("claim released x: %v", err)
	}
	// Releasing someone else's reservation does nothing.
	if err := claim(a, "z", eventstore.Reservation{Scope: "test.name", Key: "x", StreamID: a}); err != nil {
		t.Fatal(err)
	}
	var holder uuid.UUID
	if err := f.pool.QueryRow(ctx, `SELECT stream_id FROM reservations WHERE scope='test.name' AND key='x'`).Scan(&holder); err != nil || holder != b {
		t.Fatalf("x held by %v (%v), want %v", holder, err, b)
	}
}

func countEvents(t *testing.T, pool *pgxpool.Pool, stream uuid.UUID) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE stream_id = $1`, stream).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIdempotencyKeyIsWrittenWithTheEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	actor, stream := uuid.New(), uuid.New()
	req := func(expected int64) eventstore.AppendRequest {
		return eventstore.AppendRequest{
			Streams:     []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, ExpectedVersion: expected, Events: []domain.Event{Counted{1}, Counted{2}}}},
			Idempotency: &eventstore.IdempotencyKey{ActorID: actor, Key: "k1", RequestHash: []byte("h"), StreamID: stream},
		}
	}
	res, err := f.store.Append(ctx, req(0))
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := f.store.LookupIdempotency(ctx, actor, "k1")
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	if got.Position != res.Position || got.StreamVersion != 2 || got.StreamID != stream || string(got.RequestHash) != "h" {
		t.Fatalf("stored result %+v, want position %v version 2", got, res.Position)
	}
	if _, err := f.store.Append(ctx, req(2)); !errors.Is(err, eventstore.ErrIdempotencyKeyUsed) {
		t.Fatalf("reuse of the key: %v, want ErrIdempotencyKeyUsed", err)
	}
	if n := countEvents(t, f.pool, stream); n != 2 {
		t.Fatalf("stream has %d events after a refused repeat, want 2", n)
	}
}

func TestEventsAreAppendOnly(t *testing.T) {
	f := newFixture(t)
	appendN(t, f.store, uuid.New(), 0, 1)
	for _, stmt := range []string{
		`UPDATE events SET data = '{}'`,
		`DELETE FROM events`,
		`TRUNCATE events`,
	} {
		_, err := f.pool.Exec(context.Background(), stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the append-only trigger to reject it", stmt, err)
		}
	}
}

func TestAppendTxJoinsTheCallersTransaction(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	stream := uuid.New()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.AppendTx(ctx, tx, eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, Events: []domain.Event{Counted{1}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, f.pool, stream); n != 0 {
		t.Fatalf("rolled-back transaction left %d events", n)
	}
}

// A transaction that took its id before another extended the stream (it wrote before it read) would
// be delivered before that version; the store refuses it as a version conflict.
func TestAppendWithAnEarlierTransactionIDIsAConflict(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := uuid.New()
	appendN(t, f.store, s, 0, 1)
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // the id is taken now
		t.Fatal(err)
	}
	appendN(t, f.store, s, 1, 2) // version 2 commits under a later transaction id
	_, err = f.store.AppendTx(ctx, tx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: s,
		ExpectedVersion: 2, Events: []domain.Event{Counted{3}}}}})
	if !errors.Is(err, eventstore.ErrVersionConflict) {
		t.Fatalf("append from a transaction older than version 2: %v, want ErrVersionConflict", err)
	}
}

// A transaction that took its id early but commits late must not be skipped by a reader that has
// already moved past later transactions.
func TestLateCommitIsNeverSkipped(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	early, late := uuid.New(), uuid.New()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	resEarly, err := f.store.AppendTx(ctx, tx, eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: early, Events: []domain.Event{Counted{1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	resLate := appendN(t, f.store, late, 0, 2)
	if !resEarly.Position.Less(resLate.Position) {
		t.Fatalf("early transaction %v should order before %v", resEarly.Position, resLate.Position)
	}
	// While the early transaction is open, the reader sees neither: the later one is held back.
	recs, err := f.store.ReadLog(ctx, eventstore.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("read %d events past an open transaction, want 0", len(recs))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Other transactions in the cluster may hold the horizon back briefly: read until both arrive.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if recs, err = f.store.ReadLog(ctx, eventstore.Position{}, 100); err != nil {
			t.Fatal(err)
		}
		if len(recs) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(recs) != 2 || recs[0].StreamID != early || recs[1].StreamID != late {
		t.Fatalf("after commit read %d events %v, want early then late", len(recs), recs)
	}
}

// Many writers extend the same streams (retrying on conflicts) while a reader follows the log from
// its checkpoint: every stream's versions must arrive in order, without gaps or repeats.
func TestReaderSeesEveryStreamInVersionOrder(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	streams := make([]uuid.UUID, 4)
	for i := range streams {
		streams[i] = uuid.New()
	}
	const writers, appendsEach = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < appendsEach; i++ {
				stream := streams[(w+i)%len(streams)]
				for ctx.Err() == nil {
					// Read first, then write: the append is the transaction's first write.
					cur := int64(0)
					if err := f.pool.QueryRow(ctx, `SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1`, stream).Scan(&cur); err != nil {
						t.Error(err)
						return
					}
					n := 1 + (i % 3)
					evs := make([]domain.Event, n)
					for k := range evs {
						evs[k] = Counted{N: w}
					}
					_, err := f.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream, ExpectedVersion: cur, Events: evs}}})
					if err == nil {
						break
					}
					if !errors.Is(err, eventstore.ErrVersionConflict) {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	next := map[uuid.UUID]int64{}
	var pos eventstore.Position
	var seen, stored int64
	finished := false
	// Follow the log until the writers are done and every stored event has been read. An empty read
	// proves nothing: the snapshot horizon is cluster-wide, so any transaction open anywhere (another
	// test package, say) can hold events back for a while.
	for !finished || seen < stored {
		recs, err := f.store.ReadLog(ctx, pos, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if want := next[r.StreamID] + 1; r.StreamVersion != want {
				t.Fatalf("stream %s: got version %d, want %d", r.StreamID, r.StreamVersion, want)
			}
			next[r.StreamID] = r.StreamVersion
			pos = r.Position
			seen++
		}
		if !finished {
			select {
			case <-done:
				finished = true
				if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&stored); err != nil {
					t.Fatal(err)
				}
			default:
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("timed out having read %d of %d events", seen, stored)
		}
	}
	if seen != stored || stored < writers*appendsEach {
		t.Fatalf("reader saw %d events, log has %d (at least %d expected)", seen, stored, writers*appendsEach)
	}
}

func TestHashChainCanBeRecomputed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	stream := uuid.New()
	appendN(t, f.store, stream, 0, 1, 2)
	appendN(t, f.store, stream, 2, 3)
	broken, err := eventstore.VerifyStream(ctx, f.pool, stream)
	if err != nil || broken != 0 {
		t.Fatalf("VerifyStream = %d, %v; want an intact chain", broken, err)
	}
	// The SQL function auditors use gives the stored hashes too (it and the trigger must agree).
	var agree bool
	if err := f.pool.QueryRow(ctx, `SELECT bool_and(hash = sha256(prev_hash || events_canonical(e))) FROM events e`).Scan(&agree); err != nil || !agree {
		t.Fatalf("events_canonical disagrees with the trigger (%v)", err)
	}
	var prev2, hash1 []byte
	if err := f.pool.QueryRow(ctx, `SELECT (SELECT prev_hash FROM events WHERE stream_id=$1 AND stream_version=2),
		(SELECT hash FROM events WHERE stream_id=$1 AND stream_version=1)`, stream).Scan(&prev2, &hash1); err != nil {
		t.Fatal(err)
	}
	if string(prev2) != string(hash1) {
		t.Fatal("version 2 does not link to version 1")
	}
	// Tampering (as a superuser, bypassing the trigger) is found at the edited version.
	if _, err := f.pool.Exec(ctx, `ALTER TABLE events DISABLE TRIGGER events_no_update_delete`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `UPDATE events SET data = '{"n": 20}' WHERE stream_id = $1 AND stream_version = 2`, stream); err != nil {
		t.Fatal(err)
	}
	if broken, err := eventstore.VerifyStream(ctx, f.pool, stream); err != nil || broken != 2 {
		t.Fatalf("after editing version 2, VerifyStream = %d, %v; want 2", broken, err)
	}
}

func TestPersonalDataIsSealedAndErasable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	subject, stream := uuid.New(), uuid.New()
	if _, err := f.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream,
		Events: []domain.Event{Profiled{Subject: subject, Email: "ada@example.com"}}}}}); err != nil {
		t.Fatal(err)
	}
	var raw string
	if err := f.pool.QueryRow(ctx, `SELECT data::text FROM events WHERE stream_id = $1`, stream).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "ada@") || !strings.Contains(raw, "enc:v1:") {
		t.Fatalf("stored data %s, want the email sealed", raw)
	}
	recs, err := f.store.ReadStream(ctx, stream, 0)
	if err != nil || recs[0].Event.(Profiled).Email != "ada@example.com" {
		t.Fatalf("read back %v, %v", recs, err)
	}
	// Erasure: the key goes, the event stays and its chain still verifies.
	if err := f.keys.Erase(ctx, subject); err != nil {
		t.Fatal(err)
	}
	var keyLeft []byte
	if err := f.pool.QueryRow(ctx, `SELECT key FROM subject_keys WHERE subject_id = $1`, subject).Scan(&keyLeft); err != nil || keyLeft != nil {
		t.Fatalf("key after erasure = %x (%v), want NULL", keyLeft, err)
	}
	recs, err = f.store.ReadStream(ctx, stream, 0)
	if err != nil || recs[0].Event.(Profiled).Email != domain.ErasedValue {
		t.Fatalf("after erasure read %v, %v; want %q", recs, err, domain.ErasedValue)
	}
	if broken, err := eventstore.VerifyStream(ctx, f.pool, stream); err != nil || broken != 0 {
		t.Fatalf("chain after erasure: %d %v", broken, err)
	}
	// No new key is made for an erased person: new personal data for them cannot be written.
	_, err = f.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream,
		ExpectedVersion: 1, Events: []domain.Event{Profiled{Subject: subject, Email: "again@example.com"}}}}})
	if domain.ErrorCode(err) != domain.CodeConflict {
		t.Fatalf("sealing for an erased subject: %v, want conflict", err)
	}
}

// A payload whose subject is uuid.Nil holds no personal data in that instance: it is stored and read
// as it is, and no key is made.
func TestPersonalDataWithoutSubjectIsStoredAsIs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	stream := uuid.New()
	if _, err := f.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: stream,
		Events: []domain.Event{Profiled{Email: "team@example.com"}}}}}); err != nil {
		t.Fatal(err)
	}
	var raw string
	if err := f.pool.QueryRow(ctx, `SELECT data::text FROM events WHERE stream_id = $1`, stream).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(raw, "team@example.com") || strings.Contains(raw, "enc:v1:") {
		t.Fatalf("stored data %s, want the field as it is", raw)
	}
	var keys int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM subject_keys WHERE subject_id = $1`, uuid.Nil).Scan(&keys); err != nil || keys != 0 {
		t.Fatalf("keys for the nil subject: %d (%v), want none", keys, err)
	}
	recs, err := f.store.ReadStream(ctx, stream, 0)
	if err != nil || recs[0].Event.(Profiled).Email != "team@example.com" {
		t.Fatalf("read back %v, %v", recs, err)
	}
}

// CountedV2 is the next version of test.counted: n became count.
type CountedV2 struct {
	Count int `json:"count"`
}

func (CountedV2) EventName() string { return "test.counted.v2" }

func TestUpcasterLiftsOldEventsOnRead(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	stream := uuid.New()
	appendN(t, f.store, stream, 0, 7)

	reg := eventstore.NewRegistry()
	eventstore.Register[Profiled](reg)
	eventstore.Register[CountedV2](reg)
	reg.RegisterUpcaster("test.counted.v1", func(data json.RawMessage) (json.RawMessage, error) {
		var v1 struct{ N int }
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]int{"count": v1.N})
	})
	store := eventstore.New(f.pool, reg, f.keys, eventstore.Options{})
	recs, err := store.ReadStream(ctx, stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := recs[0].Event.(CountedV2); !ok || got.Count != 7 || recs[0].Name != "test.counted.v2" || recs[0].StoredName != "test.counted.v1" {
		t.Fatalf("read %#v as %s (stored %s), want CountedV2{7}", recs[0].Event, recs[0].Name, recs[0].StoredName)
	}
	// The stored row is untouched.
	var typ string
	var ver int
	if err := f.pool.QueryRow(ctx, `SELECT event_type, schema_version FROM events WHERE stream_id = $1`, stream).Scan(&typ, &ver); err != nil || typ != "test.counted" || ver != 1 {
		t.Fatalf("stored as %s v%d (%v)", typ, ver, err)
	}
}

func TestPositionTokens(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want eventstore.Position
		ok   bool
	}{
		{"12.34", eventstore.Position{TransactionID: 12, GlobalPosition: 34}, true},
		{"0.0", eventstore.Position{}, true},
		{"12", eventstore.Position{}, false},
		{"a.b", eventstore.Position{}, false},
		{"1.-2", eventstore.Position{}, false},
		{"", eventstore.Position{}, false},
	} {
		got, err := eventstore.ParsePosition(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	a, b := eventstore.Position{TransactionID: 5, GlobalPosition: 9}, eventstore.Position{TransactionID: 6, GlobalPosition: 1}
	if !a.Less(b) || b.Less(a) {
		t.Error("transaction id must order positions before global position")
	}
}

var _ = pgx.ErrNoRows
var _ = fmt.Sprint

// A large append (more events than the statement cache keeps shapes for) works the same.
func TestLargeAppend(t *testing.T) {
	f := newFixture(t)
	stream := uuid.New()
	ns := make([]int, 500)
	for i := range ns {
		ns[i] = i
	}
	res := appendN(t, f.store, stream, 0, ns...)
	recs, err := f.store.ReadStream(context.Background(), stream, 0)
	if err != nil || len(recs) != 500 || res.Versions[stream] != 500 || recs[499].Event.(Counted).N != 499 {
		t.Fatalf("read %d events (%v), version %d", len(recs), err, res.Versions[stream])
	}
	if broken, err := eventstore.VerifyStream(context.Background(), f.pool, stream); err != nil || broken != 0 {
		t.Fatalf("chain: %d %v", broken, err)
	}
}

// Delivery order is numeric in transaction ids: ReadLog, Head and the tenant log must never compare
// them as text, where '10' sorts before '9' (a log whose ids cross a power of ten would be read out of
// order, and a reader resuming after such an id would skip events).
func TestLogOrderComparesTransactionIDsAsNumbers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tenant := uuid.New()
	for _, xid := range []int{9, 10, 11, 100} {
		if _, err := f.pool.Exec(ctx, `INSERT INTO events (transaction_id, stream_type, stream_id, stream_version, event_id,
				event_type, schema_version, data, metadata, tenant_id, recorded_at)
			VALUES ($1::bigint::text::xid8, 'test', gen_random_uuid(), 1, gen_random_uuid(), 'test.counted', 1,
				jsonb_build_object('n', $1::bigint), '{}', $2, now())`, xid, tenant); err != nil {
			t.Fatal(err)
		}
	}
	numbers := func(recs []eventstore.Record) []int {
		var out []int
		for _, r := range recs {
			out = append(out, r.Event.(Counted).N)
		}
		return out
	}
	recs, err := f.store.ReadLog(ctx, eventstore.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := numbers(recs); fmt.Sprint(got) != "[9 10 11 100]" {
		t.Fatalf("log order %v, want [9 10 11 100]", got)
	}
	// Resuming after 9 reads 10 next, not 100.
	next, err := f.store.ReadLog(ctx, recs[0].Position, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := numbers(next); fmt.Sprint(got) != "[10]" {
		t.Fatalf("after transaction 9 the log reads %v, want [10]", got)
	}
	head, err := f.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != recs[3].Position {
		t.Fatalf("head %+v, want the event of transaction 100 %+v", head, recs[3].Position)
	}
	mine, err := f.store.ReadTenant(ctx, tenant, eventstore.Position{}, eventstore.TenantFilter{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := numbers(mine); fmt.Sprint(got) != "[9 10 11 100]" {
		t.Fatalf("tenant log order %v, want [9 10 11 100]", got)
	}
}

// Shaped has fields of every kind event payloads use.
type Shaped struct {
	ID      uuid.UUID         `json:"id"`
	Parent  *uuid.UUID        `json:"parent,omitempty"`
	Title   string            `json:"title"`
	At      time.Time         `json:"at"`
	N       int64             `json:"n"`
	Ok      bool              `json:"ok"`
	Tags    []string          `json:"tags"`
	Attrs   map[string]any    `json:"attrs"`
	Nested  struct{ A int }   `json:"nested"`
	Raw     json.RawMessage   `json:"raw"`
	Labels  map[string]string `json:"labels,omitempty"`
	Pointer *string           `json:"pointer"`
}

func (Shaped) EventName() string { return "test.shaped.v1" }

// The registry decodes payloads with a faster decoder than encoding/json; on every kind of input a
// payload may hold (escapes, surrogates, keys in another case, duplicates, unknown fields, nulls,
// large numbers) it must give the same value, or fail where encoding/json fails.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	reg := eventstore.NewRegistry()
	eventstore.Register[Shaped](reg)
	inputs := []string{
		`{"id":"0191e3a4-5c40-7e4c-8c3a-2f4b4e7a9d10","title":"plain","at":"2026-11-27T21:09:33.411375Z","n":3,"ok":true}`,
		`{"id":"0191e3a4-5c40-7e4c-8c3a-2f4b4e7a9d10","parent":null,"title":"caf\u00e9 \ud83d\ude00 \ud800 \"q\" \\ \/ \b\f\n\r\t","tags":["a","",null],"pointer":null}`,
		`{"ID":"0191e3a4-5c40-7e4c-8c3a-2f4b4e7a9d10","TITLE":"other case","Ok":true,"unknown":{"deep":[1,2,{"x":null}]}}`,
		`{"title":"first","title":"second","n":1,"n":2}`,
		`{"attrs":{"big":12345678901234567890,"neg":-1.5e-7,"s":"x","l":[true,false,null],"o":{}},"nested":{"a":7},"raw":{"k": [1, 2]}}`,
		`{"labels":{"k":"v","k2":""},"pointer":"set","at":"2026-01-02T03:04:05+02:00"}`,
		`{"n":9223372036854775807,"parent":"0191e3a4-5c40-7e4c-8c3a-2f4b4e7a9d11"}`,
		`{"n":9223372036854775808}`, // overflows int64: both refuse
		`{"id":"not-a-uuid"}`,
		`{"at":"yesterday"}`,
		`{"title":"unterminated`,
		`{"tags":"not a list"}`,
		`{"ok":"true"}`,
		"{\"title\":\"invalid utf-8 \xff\xfe here\"}",
	}
	for _, in := range inputs {
		got, gotErr := reg.Decode("test.shaped", 1, []byte(in), nil)
		var want Shaped
		wantErr := json.Unmarshal([]byte(in), &want)
		if (gotErr != nil) != (wantErr != nil) {
			t.Errorf("%s: registry error %v, encoding/json error %v", in, gotErr, wantErr)
			continue
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\nregistry      %#v\nencoding/json %#v", in, got, want)
		}
	}
}
