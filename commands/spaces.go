package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// SpaceResult is a space's state after a command, and where the command's last event sits.
type SpaceResult struct {
	Space    space.State
	Position eventstore.Position
}

// Space loads a space aggregate (up to maxVersion; 0 for its latest state).
func (h *Handlers) Space(ctx context.Context, id uuid.UUID, maxVersion int64) (space.State, error) {
	st, _, err := load(ctx, h.store, id, maxVersion, space.Evolve)
	return st, err
}

// CreateSpace creates a space: cc.Actor's own, or, with orgID, one of that organization (its owners and
// admins only). Errors: CodeInvalid, CodeNotFound (no such organization for the actor), CodeForbidden
// (an organization member below admin), CodeConflict when the slug is taken among the owner's spaces.
func (h *Handlers) CreateSpace(ctx context.Context, cc Context, orgID *uuid.UUID, name, slug, visibility string) (SpaceResult, error) {
	return h.CreateDescribedSpace(ctx, cc, orgID, name, slug, visibility, "")
}

// CreateDescribedSpace is CreateSpace with a description.
func (h *Handlers) CreateDescribedSpace(ctx context.Context, cc Context, orgID *uuid.UUID, name, slug, visibility, description string) (SpaceResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.spaceReplay(ctx, prev, err)
	}
	id := uuid.Must(uuid.NewV7())
	create := func(t *txn) (SpaceResult, error) {
		owner, orgRole := cc.Actor, ""
		if orgID != nil {
			o, err := h.Org(ctx, *orgID)
			if err != nil {
				return SpaceResult{}, err
			}
			if o.Exists() {
				orgRole = o.RoleOf(cc.Actor)
			}
			owner = *orgID
		}
		evs, err := space.Decide(space.State{}, space.Create{Actor: cc.Actor, OrgID: orgID, OrgRole: orgRole, SpaceID: id, Name: name, Slug: slug, Visibility: visibility, Description: description}, h.now())
		if err != nil {
			return SpaceResult{}, err
		}
		res, prev, err := h.appendIdempotent(ctx, t, cc, id, eventstore.AppendRequest{
			Streams:  []eventstore.StreamAppend{{StreamType: space.StreamType, StreamID: id, TenantID: &owner, Events: evs}},
			Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
			Claim:    []eventstore.Reservation{{Scope: space.SlugScope(owner), Key: slug, StreamID: id}},
		})
		return h.spaceOutcome(ctx, space.State{}, evs, res, prev, err)
	}
	if orgID == nil {
		// A personal space: under the user's shared lock, which erasure takes exclusively, so that a
		// space created while its owner is being erased is either in the erasure's batch or refused.
		var out SpaceResult
		err := h.withLock(ctx, userLockKey(cc.Actor), false, func(t *txn) error {
			u, err := h.User(ctx, cc.Actor)
			if err != nil {
				return err
			}
			if !u.Exists() {
				return domain.Errorf(domain.CodeNotFound, "user not found")
			}
			out, err = create(t)
			return err
		})
		return out, err
	}
	// Adding to an organization: under its shared lock, so that a concurrent deletion either includes
	// the new space or is seen by it (orglock.go).
	var out SpaceResult
	err := h.withOrgLock(ctx, *orgID, false, func(t *txn) (err error) {
		out, err = create(t)
		return err
	})
	return out, err
}

// SpaceFor loads a space and the role viewer holds in its organization ("" for none, or for a
// personal space), for authorizing reads that go to the log (history, as_of).
func (h *Handlers) SpaceFor(ctx context.Context, viewer, id uuid.UUID) (space.State, string, error) {
	st, err := h.Space(ctx, id, 0)
	if err != nil || st.OrgID == nil {
		return st, "", err
	}
	role, err := h.orgRole(ctx, *st.OrgID, viewer)
	return st, role, err
}

func (h *Handlers) orgRole(ctx context.Context, orgID, user uuid.UUID) (string, error) {
	o, err := h.Org(ctx, orgID)
	if err != nil || !o.Exists() {
		return "", err
	}
	return o.RoleOf(user), nil
}

// UpdateSpace applies a partial update. Errors: CodeNotFound, CodeForbidden, CodeInvalid,
// CodeVersionConflict (stale expected version or a concurrent writer), CodeConflict (slug taken).
func (h *Handlers) UpdateSpace(ctx context.Context, cc Context, id uuid.UUID, u space.Update) (SpaceResult, error) {
	return h.changeSpace(ctx, cc, id, u.ExpectedVersion, false, func(_ space.State, orgRole string) any {
		u.Actor, u.OrgRole = cc.Actor, orgRole
		return u
	})
}

// DeleteSpace deletes a space. Errors: CodeNotFound, CodeForbidden, CodeVersionConflict, CodeConflict
// (the personal space).
func (h *Handlers) DeleteSpace(ctx context.Context, cc Context, id uuid.UUID, expectedVersion int64) (SpaceResult, error) {
	return h.changeSpace(ctx, cc, id, expectedVersion, false, func(_ space.State, orgRole string) any {
		return space.Delete{Actor: cc.Actor, OrgRole: orgRole, ExpectedVersion: expectedVersion}
	})
}

// changeSpace loads, decides and appends. Without an expected version from the caller (no If-Match),
// a concurrent writer's win is not the caller's conflict: it reloads and decides again, a few times.
// With addsToOrg, an organization space's change runs under the organization's shared lock (adding a
// member, who must belong to the organization; orglock.go).
func (h *Handlers) changeSpace(ctx context.Context, cc Context, id uuid.UUID, expected int64, addsToOrg bool, command func(space.State, string) any) (SpaceResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.spaceReplay(ctx, prev, err)
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		res, err := h.changeSpaceOnce(ctx, cc, id, addsToOrg, command)
		if expected == 0 && attempt < attempts && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, err
	}
}

func (h *Handlers) changeSpaceOnce(ctx context.Context, cc Context, id uuid.UUID, addsToOrg bool, command func(space.State, string) any) (SpaceResult, error) {
	st, last, err := load(ctx, h.store, id, 0, space.Evolve)
	if err != nil {
		return SpaceResult{}, err
	}
	if addsToOrg && st.OrgID != nil {
		var out SpaceResult
		err := h.withOrgLock(ctx, *st.OrgID, false, func(t *txn) (err error) {
			out, err = h.decideSpace(ctx, t, cc, id, st, last, command)
			return err
		})
		return out, err
	}
	return h.decideSpace(ctx, nil, cc, id, st, last, command)
}

// decideSpace decides a command on a loaded space and appends the outcome (in t, if not nil).
func (h *Handlers) decideSpace(ctx context.Context, t *txn, cc Context, id uuid.UUID, st space.State, last eventstore.Position, command func(space.State, string) any) (SpaceResult, error) {
	orgRole := ""
	var err error
	if st.OrgID != nil {
		if orgRole, err = h.orgRole(ctx, *st.OrgID, cc.Actor); err != nil {
			return SpaceResult{}, err
		}
	}
	evs, err := space.Decide(st, command(st, orgRole), h.now())
	if err != nil {
		return SpaceResult{}, err
	}
	if len(evs) == 0 {
		// Nothing changed: no event; the token is that of the space's latest event.
		return SpaceResult{Space: st, Position: last}, nil
	}
	tenant := st.Owner()
	req := eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: space.StreamType, StreamID: id, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	}
	scope := space.SlugScope(tenant)
	for _, e := range evs {
		switch e := e.(type) {
		case space.SlugChanged:
			req.Release = append(req.Release, eventstore.Reservation{Scope: scope, Key: e.OldSlug, StreamID: id})
			req.Claim = append(req.Claim, eventstore.Reservation{Scope: scope, Key: e.Slug, StreamID: id})
		case space.Deleted:
			req.Release = append(req.Release, eventstore.Reservation{Scope: scope, Key: e.Slug, StreamID: id})
		}
	}
	res, prev, err := h.appendIdempotent(ctx, t, cc, id, req)
	return h.spaceOutcome(ctx, st, evs, res, prev, err)
}

func (h *Handlers) spaceOutcome(ctx context.Context, st space.State, evs []domain.Event, res eventstore.AppendResult, prev *eventstore.IdempotentResult, err error) (SpaceResult, error) {
	if prev != nil {
		return h.spaceReplay(ctx, *prev, nil)
	}
	if errors.Is(err, eventstore.ErrReserved) {
		return SpaceResult{}, domain.Errorf(domain.CodeConflict, "the slug is already used by another of the owner's spaces")
	}
	if err != nil {
		return SpaceResult{}, err
	}
	for _, e := range evs {
		st = space.Evolve(st, e)
	}
	return SpaceResult{Space: st, Position: res.Position}, nil
}

// spaceReplay rebuilds the result of an earlier idempotent command from the space's stream as it was
// right after that command.
func (h *Handlers) spaceReplay(ctx context.Context, prev eventstore.IdempotentResult, err error) (SpaceResult, error) {
	if err != nil {
		return SpaceResult{}, err
	}
	st, err := h.Space(ctx, prev.StreamID, prev.StreamVersion)
	if err != nil {
		return SpaceResult{}, fmt.Errorf("replay idempotent result: %w", err)
	}
	return SpaceResult{Space: st, Position: prev.Position}, nil
}

// AddSpaceMember gives userID a role (editor or viewer) in a space; managers of the space only. For an
// organization space the user must belong to the organization.
func (h *Handlers) AddSpaceMember(ctx context.Context, cc Context, id, userID uuid.UUID, role string) (SpaceResult, error) {
	target, err := h.User(ctx, userID)
	if err != nil {
		return SpaceResult{}, err
	}
	var lookupErr error
	res, err := h.changeSpace(ctx, cc, id, 0, true, func(st space.State, orgRole string) any {
		targetOrgRole := ""
		if st.OrgID != nil {
			targetOrgRole, lookupErr = h.orgRole(ctx, *st.OrgID, userID)
		}
		return space.AddMember{Actor: cc.Actor, OrgRole: orgRole, UserID: userID, Role: role, UserExists: target.Exists(), UserOrgRole: targetOrgRole}
	})
	if lookupErr != nil {
		return SpaceResult{}, lookupErr
	}
	return res, err
}

// ChangeSpaceMember gives a space member a new role.
func (h *Handlers) ChangeSpaceMember(ctx context.Context, cc Context, id, userID uuid.UUID, role string) (SpaceResult, error) {
	return h.changeSpace(ctx, cc, id, 0, false, func(_ space.State, orgRole string) any {
		return space.ChangeMember{Actor: cc.Actor, OrgRole: orgRole, UserID: userID, Role: role}
	})
}

// RemoveSpaceMember removes a space member (or lets a member leave).
func (h *Handlers) RemoveSpaceMember(ctx context.Context, cc Context, id, userID uuid.UUID) (SpaceResult, error) {
	return h.changeSpace(ctx, cc, id, 0, false, func(_ space.State, orgRole string) any {
		return space.RemoveMember{Actor: cc.Actor, OrgRole: orgRole, UserID: userID}
	})
}
