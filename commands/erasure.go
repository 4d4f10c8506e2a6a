package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/apikey"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/domain/platform"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
)

// KeyEraser destroys a subject's personal-data key (eventstore.SubjectKeys). Erase is idempotent.
type KeyEraser interface {
	Erase(ctx context.Context, subject uuid.UUID) error
}

// ErasureResult is what EraseUser did.
type ErasureResult struct {
	UserID   uuid.UUID
	ErasedAt time.Time
	Position eventstore.Position
}

// EraseUser forgets cc.Actor at their own request, confirmed with their password. In one append it
// records user.erased on the user's stream (releasing the email, so the address can register again
// as a new user), deletes every space the user owns (the personal space included: notes, files,
// blobs and search entries follow through the space-deletion cascades), revokes their API keys,
// takes them out of every organization and space they belong to, revokes their platform roles, and
// withdraws pending invitations addressed to their email. Their sessions are deleted in the same transaction. Then the keys that
// seal their personal data (and the invitations' emails) are destroyed; the erasure projector
// destroys them again from the event, so a crash between the commit and this step cannot leave the
// data readable.
//
// Errors: CodeInvalid (no password), CodeForbidden (wrong password), CodeNotFound (no such user, or
// erased already), CodeConflict (the user is the only owner of organizations, listed in Details).
func (h *Handlers) EraseUser(ctx context.Context, cc Context, password string) (ErasureResult, error) {
	if password == "" {
		return ErasureResult{}, domain.Validation{"password": "is required: erasure is confirmed with the account's password"}.Err()
	}
	st, err := h.User(ctx, cc.Actor)
	if err != nil {
		return ErasureResult{}, err
	}
	if !st.Exists() {
		return ErasureResult{}, domain.Errorf(domain.CodeNotFound, "user not found")
	}
	verified := h.hasher.Verify(st.PasswordHash, password)
	if !verified {
		// Decide answers: the password is checked before anything else is looked at.
		_, err := user.Decide(st, user.Erase{Actor: cc.Actor}, h.now())
		return ErasureResult{}, err
	}
	for attempt := 1; ; attempt++ {
		res, err := h.eraseOnce(ctx, cc, st)
		if attempt < 3 && (errors.Is(err, eventstore.ErrVersionConflict) || errors.Is(err, errMoreOrgs)) {
			if st, err = h.User(ctx, cc.Actor); err != nil {
				return ErasureResult{}, err
			}
			continue
		}
		if err != nil {
			return ErasureResult{}, err
		}
		// The event is committed; destroy the keys now so that the data is unreadable when the
		// caller gets the answer. Should this fail (or the process stop first), the erasure
		// projector destroys them from the event.
		for _, subject := range res.subjects {
			if h.keys == nil {
				break
			}
			if err := h.keys.Erase(ctx, subject); err != nil {
				break
			}
		}
		return res.ErasureResult, nil
	}
}

// userLockKey names the advisory lock that orders an erasure with the creation of the user's own
// spaces (CreateSpace without an organization takes it shared).
func userLockKey(id uuid.UUID) string { return "atlas.user:" + id.String() }

// errMoreOrgs: the user joined an organization between looking their organizations up and locking
// them; the erasure starts over.
var errMoreOrgs = errors.New("the user's organizations changed during erasure")

type erasure struct {
	ErasureResult
	subjects []uuid.UUID
}

// erasureRefs are the streams that may refer to a user, found through the log's indexes.
type erasureRefs struct {
	orgs        []uuid.UUID             // organizations the user created or joined (maybe left since)
	spaces      []uuid.UUID             // spaces the user was added to (maybe removed since)
	ownSpaces   []uuid.UUID             // live spaces the user owns (their slug reservations)
	keys        []uuid.UUID             // API keys the user created (maybe revoked since)
	invitations map[uuid.UUID]uuid.UUID // invitation → organization, for invitations to the user's email
}

func (h *Handlers) findErasureRefs(ctx context.Context, st user.State) (erasureRefs, error) {
	refs := erasureRefs{invitations: map[uuid.UUID]uuid.UUID{}}
	id := st.ID.String()
	q := h.sessions.Pool
	ids := func(sql string, args ...any) ([]uuid.UUID, error) {
		rows, err := q.Query(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	}
	var err error
	// The conditions match the partial indexes of migration 00017.
	if refs.orgs, err = ids(`SELECT stream_id FROM events WHERE event_type = 'org.created' AND data->>'owner_id' = $1
		UNION SELECT stream_id FROM events WHERE event_type = 'org.member_joined' AND data->>'user_id' = $1
		ORDER BY 1`, id); err != nil {
		return refs, fmt.Errorf("find the user's organizations: %w", err)
	}
	if refs.spaces, err = ids(`SELECT DISTINCT stream_id FROM events WHERE event_type = 'space.member_added' AND data->>'user_id' = $1
		ORDER BY 1`, id); err != nil {
		return refs, fmt.Errorf("find the user's space memberships: %w", err)
	}
	if refs.keys, err = ids(`SELECT stream_id FROM events WHERE event_type = 'api_key.created' AND data->>'user_id' = $1
		ORDER BY 1`, id); err != nil {
		return refs, fmt.Errorf("find the user's api keys: %w", err)
	}
	if refs.ownSpaces, err = ids(`SELECT stream_id FROM reservations WHERE scope = $1 ORDER BY 1`, space.SlugScope(st.ID)); err != nil {
		return refs, fmt.Errorf("find the user's spaces: %w", err)
	}
	// Invitations since the digest is sealed are listed by their reservations; older ones have the
	// digest in clear in the log.
	rows, err := q.Query(ctx, `SELECT key::uuid, stream_id FROM reservations WHERE scope = $1
		UNION SELECT (data->>'invitation_id')::uuid, stream_id FROM events
		WHERE event_type = 'org.member_invited' AND data->>'email_digest' = $2`, org.InviteeScope(EmailKey(st.Email)), EmailKey(st.Email))
	if err != nil {
		return refs, fmt.Errorf("find invitations to the user's email: %w", err)
	}
	var inv, orgID uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&inv, &orgID}, func() error {
		refs.invitations[inv] = orgID
		return nil
	}); err != nil {
		return refs, fmt.Errorf("find invitations to the user's email: %w", err)
	}
	return refs, nil
}

// lockedOrgs are the organizations whose exclusive lock the erasure takes, sorted so that two
// erasures lock in the same order.
func (r erasureRefs) lockedOrgs() []uuid.UUID {
	set := map[uuid.UUID]bool{}
	for _, id := range r.orgs {
		set[id] = true
	}
	for _, id := range r.invitations {
		set[id] = true
	}
	out := make([]uuid.UUID, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return out
}

// eraseOnce decides and appends the erasure while holding the exclusive locks of every organization
// it changes (orglock.go): leaving an organization takes the user's memberships of its spaces with
// it, which must not race a space membership being added.
func (h *Handlers) eraseOnce(ctx context.Context, cc Context, st user.State) (erasure, error) {
	refs, err := h.findErasureRefs(ctx, st)
	if err != nil {
		return erasure{}, err
	}
	locked := refs.lockedOrgs()
	select {
	case h.orgLocks <- struct{}{}:
		defer func() { <-h.orgLocks }()
	case <-ctx.Done():
		return erasure{}, ctx.Err()
	}
	var out erasure
	t := &txn{}
	err = pgx.BeginFunc(ctx, h.sessions.Pool, func(tx pgx.Tx) error {
		t.Tx = tx
		// The user's lock first (personal spaces are created under it, shared), then the
		// organizations' in a fixed order.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, userLockKey(st.ID)); err != nil {
			return fmt.Errorf("lock user %s: %w", st.ID, err)
		}
		for _, id := range locked {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "atlas.organization:"+id.String()); err != nil {
				return fmt.Errorf("lock organization %s: %w", id, err)
			}
		}
		// Looked up again under the locks: an organization joined in between means starting over.
		again, err := h.findErasureRefs(ctx, st)
		if err != nil {
			return err
		}
		for _, id := range again.lockedOrgs() {
			if _, ok := slices.BinarySearchFunc(locked, id, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) }); !ok {
				return errMoreOrgs
			}
		}
		out, err = h.eraseLocked(ctx, t, cc, st, again)
		return err
	})
	if err != nil {
		return erasure{}, err
	}
	for _, res := range t.appended {
		h.store.Committed(res)
	}
	return out, nil
}

func (h *Handlers) eraseLocked(ctx context.Context, t *txn, cc Context, st user.State, refs erasureRefs) (erasure, error) {
	now := h.now()
	uid := st.ID
	tenant := uid
	var (
		streams  []eventstore.StreamAppend
		release  = []eventstore.Reservation{{Scope: EmailScope, Key: EmailKey(st.Email), StreamID: uid}}
		keyIDs   []uuid.UUID
		spaceEvs = map[uuid.UUID]bool{} // spaces already in the append
	)
	// Organizations: the user leaves each; the only owner of one cannot be erased.
	soleOwned := map[uuid.UUID]string{}
	orgStates := map[uuid.UUID]org.State{}
	for _, id := range refs.lockedOrgs() {
		o, err := h.Org(ctx, id)
		if err != nil {
			return erasure{}, err
		}
		orgStates[id] = o
		if o.Exists() && o.RoleOf(uid) == org.Owner && o.Owners() == 1 {
			soleOwned[id] = o.Name
		}
	}
	invitationIDs := make([]uuid.UUID, 0, len(refs.invitations))
	for inv, orgID := range refs.invitations {
		invitationIDs = append(invitationIDs, inv)
		// Releasing a reservation that does not exist (an invitation from before they were kept)
		// deletes nothing.
		release = append(release, eventstore.Reservation{Scope: org.InviteeScope(EmailKey(st.Email)), Key: inv.String(), StreamID: orgID})
	}
	userEvs, err := user.Decide(st, user.Erase{Actor: cc.Actor, PasswordVerified: true, SoleOwned: soleOwned, InvitationIDs: invitationIDs}, now)
	if err != nil {
		return erasure{}, err
	}
	erased := userEvs[0].(user.Erased)
	streams = append(streams, eventstore.StreamAppend{StreamType: user.StreamType, StreamID: uid, TenantID: &tenant,
		ExpectedVersion: st.Version, Events: userEvs})

	for _, id := range refs.lockedOrgs() {
		o := orgStates[id]
		if !o.Exists() {
			continue
		}
		var evs []domain.Event
		for _, inv := range erased.InvitationIDs {
			if refs.invitations[inv] != id {
				continue
			}
			e, err := org.Decide(o, org.WithdrawInvitation{InvitationID: inv}, now)
			if err != nil {
				return erasure{}, err
			}
			for _, ev := range e {
				o = org.Evolve(o, ev)
			}
			evs = append(evs, e...)
		}
		if o.RoleOf(uid) != "" {
			e, err := org.Decide(o, org.RemoveMember{Actor: uid, UserID: uid}, now)
			if err != nil {
				return erasure{}, fmt.Errorf("leave organization %s: %w", id, err)
			}
			evs = append(evs, e...)
			// Leaving ends the user's memberships of the organization's spaces (as RemoveMember does).
			spaces, err := h.orgSpaces(ctx, id)
			if err != nil {
				return erasure{}, err
			}
			orgTenant := id
			for _, sst := range spaces {
				if sst.Members[uid] == "" {
					continue
				}
				spaceEvs[sst.ID] = true
				streams = append(streams, eventstore.StreamAppend{StreamType: space.StreamType, StreamID: sst.ID, TenantID: &orgTenant,
					ExpectedVersion: sst.Version, Events: []domain.Event{space.MemberRemoved{SpaceID: sst.ID, UserID: uid, RemovedAt: now}}})
			}
		}
		if len(evs) > 0 {
			orgTenant := id
			streams = append(streams, eventstore.StreamAppend{StreamType: org.StreamType, StreamID: id, TenantID: &orgTenant,
				ExpectedVersion: orgStates[id].Version, Events: evs})
		}
	}
	// Other people's spaces the user is a member of: the user leaves them.
	for _, id := range refs.spaces {
		if spaceEvs[id] {
			continue
		}
		sst, err := h.Space(ctx, id, 0)
		if err != nil {
			return erasure{}, err
		}
		if !sst.Exists() || sst.Members[uid] == "" {
			continue
		}
		orgRole := ""
		if sst.OrgID != nil {
			orgRole = orgStates[*sst.OrgID].RoleOf(uid)
		}
		evs, err := space.Decide(sst, space.RemoveMember{Actor: uid, OrgRole: orgRole, UserID: uid}, now)
		if err != nil {
			return erasure{}, fmt.Errorf("leave space %s: %w", id, err)
		}
		owner := sst.Owner()
		spaceEvs[id] = true
		streams = append(streams, eventstore.StreamAppend{StreamType: space.StreamType, StreamID: id, TenantID: &owner,
			ExpectedVersion: sst.Version, Events: evs})
	}
	// The user's own spaces (the personal one and any other) are deleted with all their content.
	for _, id := range refs.ownSpaces {
		sst, err := h.Space(ctx, id, 0)
		if err != nil {
			return erasure{}, err
		}
		evs, err := space.Decide(sst, space.DeleteForErasure{OwnerID: uid}, now)
		if domain.ErrorCode(err) == domain.CodeNotFound {
			continue
		}
		if err != nil {
			return erasure{}, err
		}
		spaceEvs[id] = true
		streams = append(streams, eventstore.StreamAppend{StreamType: space.StreamType, StreamID: id, TenantID: &tenant,
			ExpectedVersion: sst.Version, Events: evs})
		release = append(release, eventstore.Reservation{Scope: space.SlugScope(uid), Key: sst.Slug, StreamID: id})
	}
	// Platform roles are revoked: once the email is released no operator could name the user to
	// `atlas admin revoke` any more.
	plat, _, err := load(ctx, h.store, platform.StreamID, 0, platform.Evolve)
	if err != nil {
		return erasure{}, err
	}
	var platEvs []domain.Event
	for _, role := range plat.Holders[uid] {
		evs, err := platform.Decide(plat, platform.Revoke{User: uid, Role: role}, now)
		if err != nil {
			return erasure{}, err
		}
		platEvs = append(platEvs, evs...)
	}
	if len(platEvs) > 0 {
		streams = append(streams, eventstore.StreamAppend{StreamType: platform.StreamType, StreamID: platform.StreamID,
			ExpectedVersion: plat.Version, Events: platEvs})
	}
	// API keys are revoked: they stop authenticating with this commit.
	for _, id := range refs.keys {
		k, _, err := load(ctx, h.store, id, 0, apikey.Evolve)
		if err != nil {
			return erasure{}, err
		}
		keyIDs = append(keyIDs, id)
		if k.RevokedAt != nil || k.UserID != uid {
			continue
		}
		evs, err := apikey.Decide(k, apikey.Revoke{Actor: uid}, now)
		if err != nil {
			return erasure{}, err
		}
		streams = append(streams, eventstore.StreamAppend{StreamType: apikey.StreamType, StreamID: id, TenantID: &tenant,
			ExpectedVersion: k.Version, Events: evs})
		release = append(release, eventstore.Reservation{Scope: APIKeyScope, Key: k.KeyHash, StreamID: id})
	}
	res, err := h.appendIn(ctx, t, eventstore.AppendRequest{Streams: streams, Metadata: cc.metadata(uuid.Must(uuid.NewV7())), Release: release})
	if err != nil {
		return erasure{}, fmt.Errorf("erase user %s: %w", uid, err)
	}
	// Credentials outside the log go in the same transaction: every session ends with the commit.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM sessions WHERE user_id = $1`, []any{uid}},
		{`DELETE FROM api_key_usage WHERE key_id = ANY($1)`, []any{keyIDs}},
		{`DELETE FROM idempotency_keys WHERE actor_id = $1`, []any{uid}},
	} {
		if _, err := t.Exec(ctx, q.sql, q.args...); err != nil {
			return erasure{}, fmt.Errorf("erase user %s: %w", uid, err)
		}
	}
	return erasure{ErasureResult: ErasureResult{UserID: uid, ErasedAt: erased.ErasedAt, Position: res.Position},
		subjects: erased.Subjects()}, nil
}
