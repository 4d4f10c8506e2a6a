package commands_test

import (
	"context"
	"sync"
	"testing"
	"time"

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
	pool := pgtest.NewPool(t)
	reg := eventstore.NewRegistry()
	commands.RegisterEvents(reg)
	store := eventstore.New(pool, reg, eventstore.NewSubjectKeys(pool, time.Minute), eventstore.Options{Now: c.Now})
	return commands.New(commands.Config{Store: store, Sessions: commands.Sessions{Pool: pool},
		Hasher: commands.Argon2id{MemoryKiB: 1024, Time: 1, Threads: 1}, Now: c.Now, SessionTTL: ttl})
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
