// Package org is the organization aggregate: a team with members in roles owner > admin > member,
// and invitations that bring new members in. An organization always keeps at least one owner.
package org

import (
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// StreamType names the event streams of organizations.
const StreamType = "org"

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventCreated           = "org.created.v1"
	EventRenamed           = "org.renamed.v1"
	EventSlugChanged       = "org.slug_changed.v1"
	EventDeleted           = "org.deleted.v1"
	EventMemberInvited     = "org.member_invited.v1"
	EventInvitationRevoked = "org.invitation_revoked.v1"
	EventMemberJoined      = "org.member_joined.v1"
	EventMemberRoleChanged = "org.member_role_changed.v1"
	EventMemberRemoved     = "org.member_removed.v1"
)

// Roles, from most to least powerful.
const (
	Owner  = "owner"
	Admin  = "admin"
	Member = "member"
)

// Rank orders roles: owner 3, admin 2, member 1, anything else 0.
func Rank(role string) int {
	switch role {
	case Owner:
		return 3
	case Admin:
		return 2
	case Member:
		return 1
	}
	return 0
}

// MaxNameLength bounds an organization's name, in characters.
const MaxNameLength = 200

var slugRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$`)

// Created records a new organization; its creator is its first owner.
type Created struct {
	OrgID     uuid.UUID `json:"org_id"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"`
	OwnerID   uuid.UUID `json:"owner_id"`
	CreatedAt time.Time `json:"created_at"`
}

// Renamed records a new name.
type Renamed struct {
	OrgID     uuid.UUID `json:"org_id"`
	Name      string    `json:"name"`
	RenamedAt time.Time `json:"renamed_at"`
}

// SlugChanged records a new slug; the old one is released.
type SlugChanged struct {
	OrgID     uuid.UUID `json:"org_id"`
	OldSlug   string    `json:"old_slug"`
	Slug      string    `json:"slug"`
	ChangedAt time.Time `json:"changed_at"`
}

// Deleted records the deletion of the organization.
type Deleted struct {
	OrgID     uuid.UUID `json:"org_id"`
	Slug      string    `json:"slug"`
	DeletedAt time.Time `json:"deleted_at"`
}

// MemberInvited records an invitation. Email is the invitee's address (personal data, sealed under
// the invitation's id); EmailDigest identifies it without revealing it. Only the token's hash is kept.
// DigestSealed says that the digest is sealed too (every invitation since erasure exists): an unkeyed
// digest confirms a guess of the address, so after the invitee's erasure it must not stay readable.
// Older events have it in clear.
type MemberInvited struct {
	OrgID        uuid.UUID `json:"org_id"`
	InvitationID uuid.UUID `json:"invitation_id"`
	Email        string    `json:"email"`
	EmailDigest  string    `json:"email_digest"`
	DigestSealed bool      `json:"digest_sealed,omitempty"`
	Role         string    `json:"role"`
	TokenHash    string    `json:"token_hash"`
	InvitedBy    uuid.UUID `json:"invited_by"`
	ExpiresAt    time.Time `json:"expires_at"`
	InvitedAt    time.Time `json:"invited_at"`
}

// PersonalData implements domain.PersonalData: the invitee's email (and its digest, when
// DigestSealed), sealed under the invitation.
func (e *MemberInvited) PersonalData() (uuid.UUID, []*string) {
	if e.DigestSealed {
		return e.InvitationID, []*string{&e.Email, &e.EmailDigest}
	}
	return e.InvitationID, []*string{&e.Email}
}

// InvitationRevoked records that an invitation can no longer be accepted.
type InvitationRevoked struct {
	OrgID        uuid.UUID `json:"org_id"`
	InvitationID uuid.UUID `json:"invitation_id"`
	RevokedAt    time.Time `json:"revoked_at"`
}

// MemberJoined records a user joining through an invitation.
type MemberJoined struct {
	OrgID        uuid.UUID `json:"org_id"`
	UserID       uuid.UUID `json:"user_id"`
	Role         string    `json:"role"`
	InvitationID uuid.UUID `json:"invitation_id"`
	JoinedAt     time.Time `json:"joined_at"`
}

// MemberRoleChanged records a member's new role.
type MemberRoleChanged struct {
	OrgID     uuid.UUID `json:"org_id"`
	UserID    uuid.UUID `json:"user_id"`
	OldRole   string    `json:"old_role"`
	Role      string    `json:"role"`
	ChangedAt time.Time `json:"changed_at"`
}

// MemberRemoved records a member leaving (RemovedBy is the member) or being removed.
type MemberRemoved struct {
	OrgID     uuid.UUID `json:"org_id"`
	UserID    uuid.UUID `json:"user_id"`
	RemovedBy uuid.UUID `json:"removed_by"`
	RemovedAt time.Time `json:"removed_at"`
}

// EventName implements domain.Event.
func (Created) EventName() string { return EventCreated }

// EventName implements domain.Event.
func (Renamed) EventName() string { return EventRenamed }

// EventName implements domain.Event.
func (SlugChanged) EventName() string { return EventSlugChanged }

// EventName implements domain.Event.
func (Deleted) EventName() string { return EventDeleted }

// EventName implements domain.Event.
func (MemberInvited) EventName() string { return EventMemberInvited }

// EventName implements domain.Event.
func (InvitationRevoked) EventName() string { return EventInvitationRevoked }

// EventName implements domain.Event.
func (MemberJoined) EventName() string { return EventMemberJoined }

// EventName implements domain.Event.
func (MemberRoleChanged) EventName() string { return EventMemberRoleChanged }

// EventName implements domain.Event.
func (MemberRemoved) EventName() string { return EventMemberRemoved }

// Invitation is an invitation's state. Pending ones can be accepted until they expire.
type Invitation struct {
	ID          uuid.UUID
	EmailDigest string
	Role        string
	TokenHash   string
	ExpiresAt   time.Time
	State       string // "pending", "accepted", "revoked"
}

// State is an organization as its events describe it.
type State struct {
	ID          uuid.UUID
	Name        string
	Slug        string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Deleted     bool
	Members     map[uuid.UUID]string // user -> role
	Invitations map[uuid.UUID]Invitation
	Version     int64
}

// Exists reports whether the organization was created and not deleted.
func (s State) Exists() bool { return s.Version > 0 && !s.Deleted }

// RoleOf returns user's role, or "" for a non-member.
func (s State) RoleOf(user uuid.UUID) string { return s.Members[user] }

// Owners counts the owners.
func (s State) Owners() int {
	n := 0
	for _, r := range s.Members {
		if r == Owner {
			n++
		}
	}
	return n
}

// InvitationByToken finds an invitation by its token's hash.
func (s State) InvitationByToken(hash string) (Invitation, bool) {
	for _, inv := range s.Invitations {
		if inv.TokenHash == hash {
			return inv, true
		}
	}
	return Invitation{}, false
}

// Commands.
type (
	// Create asks for a new organization owned by Actor.
	Create struct {
		Actor      uuid.UUID
		OrgID      uuid.UUID
		Name, Slug string
	}
	// Update changes name and/or slug (nil: unchanged). Owners and admins only.
	Update struct {
		Actor           uuid.UUID
		ExpectedVersion int64
		Name, Slug      *string
	}
	// Delete deletes the organization. Owners only.
	Delete struct {
		Actor           uuid.UUID
		ExpectedVersion int64
	}
	// Invite invites Email in Role. InviteeIsMember says whether that email belongs to a member.
	Invite struct {
		Actor              uuid.UUID
		InvitationID       uuid.UUID
		Email, EmailDigest string
		Role, TokenHash    string
		ExpiresAt          time.Time
		InviteeIsMember    bool
	}
	// RevokeInvitation revokes a pending invitation.
	RevokeInvitation struct {
		Actor        uuid.UUID
		InvitationID uuid.UUID
	}
	// WithdrawInvitation revokes a pending invitation because the person it is addressed to is being
	// erased; it needs no manager.
	WithdrawInvitation struct {
		InvitationID uuid.UUID
	}
	// Accept accepts the invitation with token hash TokenHash as Actor, whose email digest is
	// ActorEmailDigest.
	Accept struct {
		Actor            uuid.UUID
		ActorEmailDigest string
		TokenHash        string
	}
	// ChangeRole gives a member a new role.
	ChangeRole struct {
		Actor, UserID uuid.UUID
		Role          string
	}
	// RemoveMember removes a member; removing oneself is leaving.
	RemoveMember struct {
		Actor, UserID uuid.UUID
	}
)

// ValidSlug reports whether slug follows the slug rule.
func ValidSlug(slug string) bool { return slugRE.MatchString(slug) }

func notFound() error { return domain.Errorf(domain.CodeNotFound, "organization not found") }

// require checks that actor may see the organization (404 otherwise) and holds at least role (403).
func (s State) require(actor uuid.UUID, role string) error {
	if !s.Exists() || s.RoleOf(actor) == "" {
		return notFound()
	}
	if Rank(s.RoleOf(actor)) < Rank(role) {
		return domain.Errorf(domain.CodeForbidden, "this needs the %s role or higher", role)
	}
	return nil
}

func lastOwner() error {
	return domain.Errorf(domain.CodeConflict, "an organization must keep at least one owner; make someone else owner first")
}

// Decide returns the events a command causes in state, or a *domain.Error: CodeInvalid for broken
// fields, CodeNotFound when the organization (or member, or invitation) does not exist for the actor,
// CodeForbidden when the actor's role is too low, CodeConflict for the last-owner rule, invitations
// that cannot be accepted and members invited twice, CodeVersionConflict for a stale expected version.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case Create:
		if s.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "organization %s already exists", c.OrgID)
		}
		v := domain.Validation{}
		if msg := domain.CheckDisplayText(c.Name, MaxNameLength); msg != "" {
			v.Add("name", msg)
		}
		if !ValidSlug(c.Slug) {
			v.Add("slug", "must be 1-64 lower-case letters, digits or inner hyphens")
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		return []domain.Event{Created{OrgID: c.OrgID, Name: strings.TrimSpace(c.Name), Slug: c.Slug, OwnerID: c.Actor, CreatedAt: now}}, nil
	case Update:
		if err := s.require(c.Actor, Admin); err != nil {
			return nil, err
		}
		if c.ExpectedVersion > 0 && c.ExpectedVersion != s.Version {
			return nil, domain.Errorf(domain.CodeVersionConflict, "organization is at version %d, not %d", s.Version, c.ExpectedVersion)
		}
		v := domain.Validation{}
		if c.Name != nil {
			if msg := domain.CheckDisplayText(*c.Name, MaxNameLength); msg != "" {
				v.Add("name", msg)
			}
		}
		if c.Slug != nil && !ValidSlug(*c.Slug) {
			v.Add("slug", "must be 1-64 lower-case letters, digits or inner hyphens")
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		var evs []domain.Event
		if c.Name != nil && strings.TrimSpace(*c.Name) != s.Name {
			evs = append(evs, Renamed{OrgID: s.ID, Name: strings.TrimSpace(*c.Name), RenamedAt: now})
		}
		if c.Slug != nil && *c.Slug != s.Slug {
			evs = append(evs, SlugChanged{OrgID: s.ID, OldSlug: s.Slug, Slug: *c.Slug, ChangedAt: now})
		}
		return evs, nil
	case Delete:
		if err := s.require(c.Actor, Owner); err != nil {
			return nil, err
		}
		if c.ExpectedVersion > 0 && c.ExpectedVersion != s.Version {
			return nil, domain.Errorf(domain.CodeVersionConflict, "organization is at version %d, not %d", s.Version, c.ExpectedVersion)
		}
		return []domain.Event{Deleted{OrgID: s.ID, Slug: s.Slug, DeletedAt: now}}, nil
	case Invite:
		if err := s.require(c.Actor, Admin); err != nil {
			return nil, err
		}
		v := domain.Validation{}
		if Rank(c.Role) == 0 {
			v.Add("role", `must be "owner", "admin" or "member"`)
		}
		if c.Email == "" {
			v.Add("email", "is required")
		}
		if !c.ExpiresAt.After(now) {
			v.Add("expires_at", "must be in the future")
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		if c.Role == Owner && s.RoleOf(c.Actor) != Owner {
			return nil, domain.Errorf(domain.CodeForbidden, "only owners may invite owners")
		}
		if c.InviteeIsMember {
			return nil, domain.Errorf(domain.CodeConflict, "that person is already a member")
		}
		for _, inv := range s.Invitations {
			if inv.EmailDigest == c.EmailDigest && inv.State == "pending" && inv.ExpiresAt.After(now) {
				return nil, domain.Errorf(domain.CodeConflict, "an invitation for that email is pending; revoke it to send a new one")
			}
		}
		return []domain.Event{MemberInvited{OrgID: s.ID, InvitationID: c.InvitationID, Email: c.Email, EmailDigest: c.EmailDigest, DigestSealed: true,
			Role: c.Role, TokenHash: c.TokenHash, InvitedBy: c.Actor, ExpiresAt: c.ExpiresAt.UTC(), InvitedAt: now}}, nil
	case RevokeInvitation:
		if err := s.require(c.Actor, Admin); err != nil {
			return nil, err
		}
		inv, ok := s.Invitations[c.InvitationID]
		if !ok || inv.State != "pending" {
			return nil, domain.Errorf(domain.CodeNotFound, "invitation not found")
		}
		return []domain.Event{InvitationRevoked{OrgID: s.ID, InvitationID: inv.ID, RevokedAt: now}}, nil
	case WithdrawInvitation:
		inv, ok := s.Invitations[c.InvitationID]
		if !s.Exists() || !ok || inv.State != "pending" {
			return nil, nil
		}
		return []domain.Event{InvitationRevoked{OrgID: s.ID, InvitationID: inv.ID, RevokedAt: now}}, nil
	case Accept:
		inv, ok := s.InvitationByToken(c.TokenHash)
		switch {
		case !s.Exists() || !ok:
			return nil, domain.Errorf(domain.CodeNotFound, "invitation not found")
		case inv.State == "revoked":
			return nil, domain.Errorf(domain.CodeConflict, "the invitation was revoked")
		case inv.State == "accepted":
			return nil, domain.Errorf(domain.CodeConflict, "the invitation was already used")
		case !inv.ExpiresAt.After(now):
			return nil, domain.Errorf(domain.CodeConflict, "the invitation expired")
		case inv.EmailDigest != c.ActorEmailDigest:
			return nil, domain.Errorf(domain.CodeConflict, "the invitation is for another email address")
		case s.RoleOf(c.Actor) != "":
			return nil, domain.Errorf(domain.CodeConflict, "you are already a member")
		}
		return []domain.Event{MemberJoined{OrgID: s.ID, UserID: c.Actor, Role: inv.Role, InvitationID: inv.ID, JoinedAt: now}}, nil
	case ChangeRole:
		if err := s.require(c.Actor, Admin); err != nil {
			return nil, err
		}
		if Rank(c.Role) == 0 {
			return nil, domain.Validation{"role": `must be "owner", "admin" or "member"`}.Err()
		}
		old := s.RoleOf(c.UserID)
		if old == "" {
			return nil, domain.Errorf(domain.CodeNotFound, "member not found")
		}
		if (old == Owner || c.Role == Owner) && s.RoleOf(c.Actor) != Owner {
			return nil, domain.Errorf(domain.CodeForbidden, "only owners may make or unmake owners")
		}
		if old == c.Role {
			return nil, nil
		}
		if old == Owner && s.Owners() == 1 {
			return nil, lastOwner()
		}
		return []domain.Event{MemberRoleChanged{OrgID: s.ID, UserID: c.UserID, OldRole: old, Role: c.Role, ChangedAt: now}}, nil
	case RemoveMember:
		if !s.Exists() || s.RoleOf(c.Actor) == "" {
			return nil, notFound()
		}
		target := s.RoleOf(c.UserID)
		if target == "" {
			return nil, domain.Errorf(domain.CodeNotFound, "member not found")
		}
		if c.UserID != c.Actor {
			if err := s.require(c.Actor, Admin); err != nil {
				return nil, err
			}
			if target == Owner && s.RoleOf(c.Actor) != Owner {
				return nil, domain.Errorf(domain.CodeForbidden, "only owners may remove owners")
			}
		}
		if target == Owner && s.Owners() == 1 {
			return nil, lastOwner()
		}
		return []domain.Event{MemberRemoved{OrgID: s.ID, UserID: c.UserID, RemovedBy: c.Actor, RemovedAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "org: unknown command %T", cmd)
	}
}

// Evolve applies one event to state. It never fails. The maps are copied on write, so earlier
// states stay as they were.
func Evolve(s State, e domain.Event) State {
	s.Version++
	members := func() map[uuid.UUID]string {
		m := make(map[uuid.UUID]string, len(s.Members)+1)
		for k, v := range s.Members {
			m[k] = v
		}
		return m
	}
	invitations := func() map[uuid.UUID]Invitation {
		m := make(map[uuid.UUID]Invitation, len(s.Invitations)+1)
		for k, v := range s.Invitations {
			m[k] = v
		}
		return m
	}
	switch e := e.(type) {
	case Created:
		s.ID, s.Name, s.Slug, s.CreatedAt, s.UpdatedAt = e.OrgID, e.Name, e.Slug, e.CreatedAt, e.CreatedAt
		s.Members = map[uuid.UUID]string{e.OwnerID: Owner}
		s.Invitations = map[uuid.UUID]Invitation{}
	case Renamed:
		s.Name, s.UpdatedAt = e.Name, e.RenamedAt
	case SlugChanged:
		s.Slug, s.UpdatedAt = e.Slug, e.ChangedAt
	case Deleted:
		s.Deleted, s.UpdatedAt = true, e.DeletedAt
	case MemberInvited:
		s.Invitations = invitations()
		s.Invitations[e.InvitationID] = Invitation{ID: e.InvitationID, EmailDigest: e.EmailDigest, Role: e.Role,
			TokenHash: e.TokenHash, ExpiresAt: e.ExpiresAt, State: "pending"}
	case InvitationRevoked:
		s.Invitations = invitations()
		inv := s.Invitations[e.InvitationID]
		inv.State = "revoked"
		s.Invitations[e.InvitationID] = inv
	case MemberJoined:
		s.Members = members()
		s.Members[e.UserID] = e.Role
		s.Invitations = invitations()
		inv := s.Invitations[e.InvitationID]
		inv.State = "accepted"
		s.Invitations[e.InvitationID] = inv
	case MemberRoleChanged:
		s.Members = members()
		s.Members[e.UserID] = e.Role
	case MemberRemoved:
		s.Members = members()
		delete(s.Members, e.UserID)
	}
	return s
}

// SlugScope is the reservation scope that keeps organization slugs unique.
const SlugScope = "org.slug"

// InviteeScope is the reservation scope that lists the invitations sent to one address (by its
// digest): one reservation per invitation (key: the invitation's id, stream: the organization),
// claimed with the invitation and released when the invitee is erased. It is how erasure finds the
// invitations whose digest is sealed in the log.
func InviteeScope(emailDigest string) string { return "org.invitee:" + emailDigest }

// InvitationScope is the reservation scope that finds an invitation's organization by its token's
// hash. It is kept after use or revocation, so a used token is told apart from an unknown one.
const InvitationScope = "org.invitation"
