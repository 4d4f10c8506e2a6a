package commands_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
)

// TestErasureRacesPersonalSpaceCreation erases a user while requests of theirs, authenticated before,
// keep creating spaces of their own: every space created is in the erasure's batch (deleted), and
// every creation after it is refused.
func TestErasureRacesPersonalSpaceCreation(t *testing.T) {
	h := newHandlers(t, &clock{now: time.Now()}, time.Hour)
	ctx := context.Background()
	const rounds, creators = 4, 4
	for round := 0; round < rounds; round++ {
		reg, err := h.Register(ctx, commands.Context{}, fmt.Sprintf("erased-%d@example.com", round), "Racer", "correct horse battery")
		if err != nil {
			t.Fatal(err)
		}
		cc := commands.Context{Actor: reg.User.ID}
		var (
			mu      sync.Mutex
			created []uuid.UUID
			wg      sync.WaitGroup
		)
		started := make(chan struct{}, creators)
		for c := 0; c < creators; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					res, err := h.CreateSpace(ctx, cc, nil, "S", fmt.Sprintf("s-%d-%d", c, i), "private")
					if err != nil {
						if code := domain.ErrorCode(err); code != domain.CodeNotFound {
							t.Errorf("create after the erasure: %v (code %s), want not_found", err, code)
						}
						if i == 0 {
							started <- struct{}{}
						}
						return
					}
					mu.Lock()
					created = append(created, res.Space.ID)
					mu.Unlock()
					if i == 0 {
						started <- struct{}{}
					}
				}
			}()
		}
		for c := 0; c < creators; c++ {
			<-started
		}
		if _, err := h.EraseUser(ctx, cc, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for _, id := range append(created, reg.User.PersonalSpaceID) {
			st, err := h.Space(ctx, id, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Deleted {
				t.Fatalf("round %d: space %s survived its owner's erasure (%d spaces created)", round, id, len(created))
			}
		}
		if _, err := h.EraseUser(ctx, cc, "correct horse battery"); domain.ErrorCode(err) != domain.CodeNotFound {
			t.Fatalf("erasing twice: %v, want not_found", err)
		}
	}
}

// TestConcurrentErasuresOfOneUser: two erasures at once append one user.erased; the other finds the
// user gone.
func TestConcurrentErasuresOfOneUser(t *testing.T) {
	h := newHandlers(t, &clock{now: time.Now()}, time.Hour)
	ctx := context.Background()
	reg, err := h.Register(ctx, commands.Context{}, "twice@example.com", "Twice", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	cc := commands.Context{Actor: reg.User.ID}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := h.EraseUser(ctx, cc, "correct horse battery")
			errs <- err
		}()
	}
	ok, notFound := 0, 0
	for range 2 {
		switch err := <-errs; domain.ErrorCode(err) {
		case "":
			ok++
		case domain.CodeNotFound:
			notFound++
		default:
			t.Errorf("erasure: %v", err)
		}
	}
	if ok != 1 || notFound != 1 {
		t.Fatalf("%d erasures succeeded and %d found the user gone; want 1 and 1", ok, notFound)
	}
	st, err := h.User(ctx, reg.User.ID)
	if err != nil || !st.Erased || st.Version != 2 {
		t.Fatalf("user after two erasures: %+v (%v), want erased once", st, err)
	}
}
