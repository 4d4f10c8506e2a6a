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

// TestOrgDeletionRacesSpaceCreation deletes organizations while their admins keep creating spaces in
// them. Every space whose creation succeeded must be deleted with its organization: none escapes the
// deletion's batch.
func TestOrgDeletionRacesSpaceCreation(t *testing.T) {
	h := newHandlers(t, &clock{now: time.Now()}, time.Hour)
	ctx := context.Background()
	reg, err := h.Register(ctx, commands.Context{}, "racer@example.com", "Racer", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	cc := commands.Context{Actor: reg.User.ID}
	const rounds, creators = 6, 6
	for round := 0; round < rounds; round++ {
		o, err := h.CreateOrg(ctx, cc, "Race", fmt.Sprintf("race-%d", round))
		if err != nil {
			t.Fatal(err)
		}
		orgID := o.Org.ID
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
					res, err := h.CreateSpace(ctx, cc, &orgID, "S", fmt.Sprintf("s-%d-%d", c, i), "private")
					if err != nil {
						if code := domain.ErrorCode(err); code != domain.CodeNotFound {
							t.Errorf("create after the deletion: %v (code %s), want not_found", err, code)
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
			<-started // every creator is in its loop
		}
		if _, err := h.DeleteOrg(ctx, cc, orgID, 0); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for _, id := range created {
			st, err := h.Space(ctx, id, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Deleted {
				t.Fatalf("round %d: space %s was created in the organization and survived its deletion (%d spaces created)", round, id, len(created))
			}
		}
	}
}

// TestLeavingRacesSpaceMembership has a member leave an organization while an admin adds them to one of
// its spaces: afterwards they are never a member of the space without being one of the organization.
func TestLeavingRacesSpaceMembership(t *testing.T) {
	h := newHandlers(t, &clock{now: time.Now()}, time.Hour)
	ctx := context.Background()
	owner, err := h.Register(ctx, commands.Context{}, "owner@example.com", "Owner", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	cc := commands.Context{Actor: owner.User.ID}
	o, err := h.CreateOrg(ctx, cc, "Race", "race")
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Org.ID
	sp, err := h.CreateSpace(ctx, cc, &orgID, "S", "s", "private")
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 15; round++ {
		email := fmt.Sprintf("m%d@example.com", round)
		m, err := h.Register(ctx, commands.Context{}, email, "M", "correct horse battery")
		if err != nil {
			t.Fatal(err)
		}
		inv, err := h.Invite(ctx, cc, orgID, email, "member")
		if err != nil {
			t.Fatal(err)
		}
		mc := commands.Context{Actor: m.User.ID}
		if _, err := h.AcceptInvitation(ctx, mc, inv.Token); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := h.AddSpaceMember(ctx, cc, sp.Space.ID, m.User.ID, "viewer"); err != nil && domain.ErrorCode(err) != domain.CodeConflict {
				t.Errorf("add: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := h.RemoveMember(ctx, mc, orgID, m.User.ID); err != nil {
				t.Errorf("leave: %v", err)
			}
		}()
		wg.Wait()
		st, err := h.Space(ctx, sp.Space.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if role := st.Members[m.User.ID]; role != "" {
			t.Fatalf("round %d: the user left the organization but is still a %s of its space", round, role)
		}
	}
}

// TestConcurrentFolderMovesNeverMakeACycle moves two folders into each other at once, many times:
// at most one move wins each time, and the tree never has a cycle.
func TestConcurrentFolderMovesNeverMakeACycle(t *testing.T) {
	h := newHandlers(t, &clock{now: time.Now()}, time.Hour)
	ctx := context.Background()
	reg, err := h.Register(ctx, commands.Context{}, "mover@example.com", "Mover", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	cc := commands.Context{Actor: reg.User.ID}
	space := reg.User.PersonalSpaceID
	for round := 0; round < 15; round++ {
		a, err := h.CreateFolder(ctx, cc, space, nil, fmt.Sprintf("a%d", round))
		if err != nil {
			t.Fatal(err)
		}
		b, err := h.CreateFolder(ctx, cc, space, nil, fmt.Sprintf("b%d", round))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, pair := range [][2]uuid.UUID{{a.Folder.ID, b.Folder.ID}, {b.Folder.ID, a.Folder.ID}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				parent := &pair[1]
				_, errs[i] = h.UpdateFolder(ctx, cc, pair[0], 0, nil, &parent)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && domain.ErrorCode(err) != domain.CodeInvalid {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if errs[0] == nil && errs[1] == nil {
			t.Fatalf("round %d: both folders moved into each other", round)
		}
		// Walk up from each: the chain must reach the root.
		for _, start := range []uuid.UUID{a.Folder.ID, b.Folder.ID} {
			cur, steps := &start, 0
			for cur != nil {
				f, err := h.Folder(ctx, *cur)
				if err != nil {
					t.Fatal(err)
				}
				if steps++; steps > 3 {
					t.Fatalf("round %d: a cycle through %s", round, start)
				}
				cur = f.ParentID
			}
		}
	}
}
