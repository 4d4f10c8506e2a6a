package commands

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
)

// InvitationTTL is how long an invitation can be accepted.
const InvitationTTL = 7 * 24 * time.Hour

// OrgResult is an organization's state after a command, and where the command's last event sits.
type OrgResult struct {
	Org      org.State
	Position eventstore.Position
}

// Org loads an organization aggregate.
func (h *Handlers) Org(ctx context.Context, id uuid.UUID) (org.State, error) {
	st, _, err := load(ctx, h.store, id, 0, org.Evolve)
	return st, err
}

// CreateOrg creates an organization owned by cc.Actor. Errors: CodeInvalid, CodeConflict (slug taken).
func (h *Handlers) CreateOrg(ctx context.Context, cc Context, name, slug string) (OrgResult, error) {
	id := uuid.Must(uuid.NewV7())
	evs, err := org.Decide(org.State{}, org.Create{Actor: cc.Actor, OrgID: id, Name: name, Slug: slug}, h.now())
	if err != nil {
		return OrgResult{}, err
	}
	res, err := h.store.Append(ctx, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: org.StreamType, StreamID: id, TenantID: &id, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		Claim:    []eventstore.Reservation{{Scope: org.SlugScope, Key: slug, StreamID: id}},
	})
	if errors.Is(err, eventstore.ErrReserved) {
		return OrgResult{}, domain.Errorf(domain.CodeConflict, "the slug is already used by another organization")
	}
	if err != nil {
		return OrgResult{}, fmt.Errorf("create organization: %w", err)
	}
	return OrgResult{Org: org.Evolve(org.State{}, evs[0]), Position: res.Position}, nil
}

// changeOrg loads, decides and appends with the reservations the events imply. Without an expected
// version it retries a few times when another writer wins.
func (h *Handlers) changeOrg(ctx context.Context, cc Context, id uuid.UUID, expected int64, command func(org.State) (any, error)) (OrgResult, error) {
	for attempt := 1; ; attempt++ {
		res, err := h.changeOrgOnce(ctx, cc, id, command)
		if expected == 0 && attempt < 3 && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, err
	}
}

// changeOrgOnce holds the organization's exclusive lock: a member leaving takes their space
// memberships with them, which must not race a space membership being added (orglock.go).
func (h *Handlers) changeOrgOnce(ctx context.Context, cc Context, id uuid.UUID, command func(org.State) (any, error)) (OrgResult, error) {
	var out OrgResult
	err := h.withOrgLock(ctx, id, true, func(t *txn) (err error) {
		out, err = h.changeOrgLocked(ctx, t, cc, id, command)
		return err
	})
	return out, err
}

func (h *Handlers) changeOrgLocked(ctx context.Context, t *txn, cc Context, id uuid.UUID, command func(org.State) (any, error)) (OrgResult, error) {
	st, last, err := load(ctx, h.store, id, 0, org.Evolve)
	if err != nil {
		return OrgResult{}, err
	}
	cmd, err := command(st)
	if err != nil {
		return OrgResult{}, err
	}
	evs, err := org.Decide(st, cmd, h.now())
	if err != nil {
		return OrgResult{}, err
	}
	if len(evs) == 0 {
		return OrgResult{Org: st, Position: last}, nil
	}
	req := eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: org.StreamType, StreamID: id, TenantID: &id, ExpectedVersion: st.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	}
	for _, e := range evs {
		switch e := e.(type) {
		case org.SlugChanged:
			req.Release = append(req.Release, eventstore.Reservation{Scope: org.SlugScope, Key: e.OldSlug, StreamID: id})
			req.Claim = append(req.Claim, eventstore.Reservation{Scope: org.SlugScope, Key: e.Slug, StreamID: id})
		case org.MemberInvited:
			req.Claim = append(req.Claim, eventstore.Reservation{Scope: org.InvitationScope, Key: e.TokenHash, StreamID: id},
				eventstore.Reservation{Scope: org.InviteeScope(e.EmailDigest), Key: e.InvitationID.String(), StreamID: id})
		case org.MemberRemoved:
			// Leaving the organization ends its space memberships too, in the same statement, so
			// that rejoining later does not silently bring them back.
			spaces, err := h.orgSpaces(ctx, id)
			if err != nil {
				return OrgResult{}, err
			}
			for _, sst := range spaces {
				if sst.Members[e.UserID] == "" {
					continue
				}
				req.Streams = append(req.Streams, eventstore.StreamAppend{StreamType: space.StreamType, StreamID: sst.ID, TenantID: &id,
					ExpectedVersion: sst.Version, Events: []domain.Event{space.MemberRemoved{SpaceID: sst.ID, UserID: e.UserID, RemovedAt: e.RemovedAt}}})
			}
		}
	}
	res, err := h.appendIn(ctx, t, req)
	if errors.Is(err, eventstore.ErrReserved) {
		return OrgResult{}, domain.Errorf(domain.CodeConflict, "the slug is already used by another organization")
	}
	if err != nil {
		return OrgResult{}, fmt.Errorf("append to organization %s: %w", id, err)
	}
	for _, e := range evs {
		st = org.Evolve(st, e)
	}
	return OrgResult{Org: st, Position: res.Position}, nil
}

// UpdateOrg renames or re-slugs an organization (owners and admins).
func (h *Handlers) UpdateOrg(ctx context.Context, cc Context, id uuid.UUID, expected int64, name, slug *string) (OrgResult, error) {
	return h.changeOrg(ctx, cc, id, expected, func(org.State) (any, error) {
		return org.Update{Actor: cc.Actor, ExpectedVersion: expected, Name: name, Slug: slug}, nil
	})
}

// DeleteOrg deletes an organization (owners only) and, in the same append, every one of its spaces.
func (h *Handlers) DeleteOrg(ctx context.Context, cc Context, id uuid.UUID, expected int64) (OrgResult, error) {
	for attempt := 1; ; attempt++ {
		res, err := h.deleteOrgOnce(ctx, cc, id, expected)
		if expected == 0 && attempt < 3 && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, err
	}
}

// deleteOrgOnce holds the organization's exclusive lock, so that every space created before it is in
// the batch and none is created after it (orglock.go).
func (h *Handlers) deleteOrgOnce(ctx context.Context, cc Context, id uuid.UUID, expected int64) (OrgResult, error) {
	var out OrgResult
	err := h.withOrgLock(ctx, id, true, func(t *txn) (err error) {
		out, err = h.deleteOrgLocked(ctx, t, cc, id, expected)
		return err
	})
	return out, err
}

func (h *Handlers) deleteOrgLocked(ctx context.Context, t *txn, cc Context, id uuid.UUID, expected int64) (OrgResult, error) {
	st, _, err := load(ctx, h.store, id, 0, org.Evolve)
	if err != nil {
		return OrgResult{}, err
	}
	now := h.now()
	evs, err := org.Decide(st, org.Delete{Actor: cc.Actor, ExpectedVersion: expected}, now)
	if err != nil {
		return OrgResult{}, err
	}
	req := eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: org.StreamType, StreamID: id, TenantID: &id, ExpectedVersion: st.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		Release:  []eventstore.Reservation{{Scope: org.SlugScope, Key: st.Slug, StreamID: id}},
	}
	// Every live space of the organization goes with it.
	spaces, err := h.orgSpaces(ctx, id)
	if err != nil {
		return OrgResult{}, err
	}
	for _, sst := range spaces {
		sevs, err := space.Decide(sst, space.Delete{Actor: cc.Actor, OrgRole: st.RoleOf(cc.Actor)}, now)
		if err != nil {
			return OrgResult{}, fmt.Errorf("delete space %s of the organization: %w", sst.ID, err)
		}
		req.Streams = append(req.Streams, eventstore.StreamAppend{StreamType: space.StreamType, StreamID: sst.ID, TenantID: &id,
			ExpectedVersion: sst.Version, Events: sevs})
		req.Release = append(req.Release, eventstore.Reservation{Scope: space.SlugScope(id), Key: sst.Slug, StreamID: sst.ID})
	}
	res, err := h.appendIn(ctx, t, req)
	if err != nil {
		return OrgResult{}, fmt.Errorf("delete organization %s: %w", id, err)
	}
	for _, e := range evs {
		st = org.Evolve(st, e)
	}
	return OrgResult{Org: st, Position: res.Position}, nil
}

// orgSpaces loads every live space of an organization: each holds a slug reservation under it.
func (h *Handlers) orgSpaces(ctx context.Context, orgID uuid.UUID) ([]space.State, error) {
	rows, err := h.sessions.Pool.Query(ctx, `SELECT stream_id FROM reservations WHERE scope = $1 ORDER BY stream_id`, space.SlugScope(orgID))
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, err
	}
	out := make([]space.State, 0, len(ids))
	for _, sid := range ids {
		sst, err := h.Space(ctx, sid, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, sst)
	}
	return out, nil
}

// Invitation is the result of Invite: the token is shown once.
type Invitation struct {
	ID        uuid.UUID
	Token     string
	ExpiresAt time.Time
	Position  eventstore.Position
}

// Invite invites email into an organization in role (owners and admins; only owners invite owners).
// Errors: CodeInvalid, CodeNotFound, CodeForbidden, CodeConflict (already a member, or pending).
func (h *Handlers) Invite(ctx context.Context, cc Context, orgID uuid.UUID, email, role string) (Invitation, error) {
	if msg := user.CheckEmail(email); msg != "" {
		return Invitation{}, domain.Validation{"email": msg}.Err()
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return Invitation{}, err
	}
	inv := Invitation{ID: uuid.Must(uuid.NewV7()), Token: "atli_" + base64.RawURLEncoding.EncodeToString(raw), ExpiresAt: h.now().Add(InvitationTTL)}
	invitee, err := h.userByEmail(ctx, email)
	if err != nil {
		return Invitation{}, err
	}
	res, err := h.changeOrg(ctx, cc, orgID, 0, func(st org.State) (any, error) {
		return org.Invite{Actor: cc.Actor, InvitationID: inv.ID, Email: user.NormalizeEmail(email), EmailDigest: EmailKey(email),
			Role: role, TokenHash: hexSHA256(inv.Token), ExpiresAt: inv.ExpiresAt,
			InviteeIsMember: invitee != uuid.Nil && st.RoleOf(invitee) != ""}, nil
	})
	if err != nil {
		return Invitation{}, err
	}
	inv.Position = res.Position
	return inv, nil
}

// userByEmail returns the id of the user registered with email, or uuid.Nil.
func (h *Handlers) userByEmail(ctx context.Context, email string) (uuid.UUID, error) {
	var id uuid.UUID
	err := h.sessions.Pool.QueryRow(ctx, `SELECT stream_id FROM reservations WHERE scope = $1 AND key = $2`, EmailScope, EmailKey(email)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, nil
	}
	return id, err
}

// RevokeInvitation revokes a pending invitation (owners and admins).
func (h *Handlers) RevokeInvitation(ctx context.Context, cc Context, orgID, invitationID uuid.UUID) (OrgResult, error) {
	return h.changeOrg(ctx, cc, orgID, 0, func(org.State) (any, error) {
		return org.RevokeInvitation{Actor: cc.Actor, InvitationID: invitationID}, nil
	})
}

// AcceptInvitation makes cc.Actor a member through an invitation token. Errors: CodeNotFound for an
// unknown token; CodeConflict when it expired, was revoked or used, is for another email, or the
// caller is a member already.
func (h *Handlers) AcceptInvitation(ctx context.Context, cc Context, token string) (OrgResult, error) {
	hash := hexSHA256(token)
	var orgID uuid.UUID
	err := h.sessions.Pool.QueryRow(ctx, `SELECT stream_id FROM reservations WHERE scope = $1 AND key = $2`, org.InvitationScope, hash).Scan(&orgID)
	if errors.Is(err, pgx.ErrNoRows) {
		return OrgResult{}, domain.Errorf(domain.CodeNotFound, "invitation not found")
	}
	if err != nil {
		return OrgResult{}, err
	}
	me, err := h.User(ctx, cc.Actor)
	if err != nil {
		return OrgResult{}, err
	}
	return h.changeOrg(ctx, cc, orgID, 0, func(org.State) (any, error) {
		return org.Accept{Actor: cc.Actor, ActorEmailDigest: EmailKey(me.Email), TokenHash: hash}, nil
	})
}

// ChangeMemberRole gives a member a new role.
func (h *Handlers) ChangeMemberRole(ctx context.Context, cc Context, orgID, userID uuid.UUID, role string) (OrgResult, error) {
	return h.changeOrg(ctx, cc, orgID, 0, func(org.State) (any, error) {
		return org.ChangeRole{Actor: cc.Actor, UserID: userID, Role: role}, nil
	})
}

// RemoveMember removes a member, or lets cc.Actor leave when userID is themself.
func (h *Handlers) RemoveMember(ctx context.Context, cc Context, orgID, userID uuid.UUID) (OrgResult, error) {
	return h.changeOrg(ctx, cc, orgID, 0, func(org.State) (any, error) {
		return org.RemoveMember{Actor: cc.Actor, UserID: userID}, nil
	})
}
