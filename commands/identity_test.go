package commands_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/internal/pgtest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newHandlers(t *testing.T, c *clock, ttl time.Duration) *commands.Handlers {
	h, _ := newHandlersAndPool(t, c, ttl)
	return h
}

func newHandlersAndPool(t *testing.T, c *clock, ttl time.Duration) (*commands.Handlers, *pgxpool.Pool) {
	pool := pgtest.NewPool(t)
	reg := eventstore.NewRegistry()
	commands.RegisterEvents(reg)
	store := eventstore.New(pool, reg, eventstore.NewSubjectKeys(pool, time.Minute), eventstore.Options{Now: c.Now})
	return commands.New(commands.Config{Store: store, Sessions: commands.Sessions{Pool: pool},
		Hasher: commands.Argon2id{MemoryKiB: 1024, Time: 1, Threads: 1}, Now: c.Now, SessionTTL: ttl}), pool
}

func TestSessionsExpireAndRevoke(t *testing.T) {
	c := &clock{now: time.Now()}
	h := newHandlers(t, c, time.Hour)
	ctx := context.Background()
	reg, err := h.Register(ctx, commands.Context{}, "s@example.com", "S", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := h.Authenticate(ctx, reg.Token); err != nil || id != reg.User.ID {
		t.Fatalf("fresh token: %v %v", id, err)
	}
	c.Add(time.Hour + time.Second)
	if _, err := h.Authenticate(ctx, reg.Token); domain.ErrorCode(err) != domain.CodeUnauthenticated {
		t.Fatalf("expired token: %v, want unauthenticated", err)
	}
	login, err := h.Login(ctx, "S@EXAMPLE.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Logout(ctx, login.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Authenticate(ctx, login.Token); domain.ErrorCode(err) != domain.CodeUnauthenticated {
		t.Fatalf("revoked token: %v, want unauthenticated", err)
	}
}

// Concurrent registrations of one email (in any letter case): exactly one succeeds.
func TestConcurrentRegistrationsOfOneEmail(t *testing.T) {
	h := newHandlers(t, &clock{now: time.Now()}, time.Hour)
	emails := []string{"race@example.com", "RACE@example.com", "Race@Example.com", "race@EXAMPLE.COM"}
	var wg sync.WaitGroup
	errs := make([]error, len(emails))
	for i, e := range emails {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.Register(context.Background(), commands.Context{}, e, "R", "correct horse battery")
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch domain.ErrorCode(err) {
		case "":
			ok++
		case domain.CodeConflict:
		default:
			t.Errorf("%s: %v", emails[i], err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d registrations succeeded, want 1", ok)
	}
}

func TestSweepDropsOldSessionsAndIdempotencyKeys(t *testing.T) {
	c := &clock{now: time.Now()}
	h, pool := newHandlersAndPool(t, c, time.Hour)
	ctx := context.Background()
	old, err := h.Register(ctx, commands.Context{}, "old@example.com", "Old", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateSpace(ctx, commands.Context{Actor: old.User.ID, IdempotencyKey: "k", RequestHash: []byte("h")}, nil, "S", "s", "private"); err != nil {
		t.Fatal(err)
	}
	c.Add(commands.SessionRetention + 2*time.Hour) // the session expired an hour after creation
	fresh, err := h.Login(ctx, "old@example.com", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	sessions, keys, err := h.Sweep(ctx)
	if err != nil || sessions != 1 || keys != 0 {
		t.Fatalf("Sweep = %d sessions, %d keys, %v; want 1, 0 (the key's age is the database's clock)", sessions, keys, err)
	}
	if _, err := h.Authenticate(ctx, fresh.Token); err != nil {
		t.Fatalf("the live session was swept: %v", err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'`); err != nil {
		t.Fatal(err)
	}
	if _, keys, err := h.Sweep(ctx); err != nil || keys != 1 {
		t.Fatalf("Sweep of a 25-hour-old key deleted %d (%v), want 1", keys, err)
	}
}
