// Package space is the space aggregate: a workspace owned by a user (personal) or an organization,
// with a slug unique per owner and a visibility.
package space

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/org"
)

// StreamType names the event streams of spaces.
const StreamType = "space"

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventCreated           = "space.created.v2" // v1 had no description (UpcastCreatedV1)
	EventDescribed         = "space.description_changed.v1"
	EventRenamed           = "space.renamed.v1"
	EventSlugChanged       = "space.slug_changed.v1"
	EventVisibilityChanged = "space.visibility_changed.v1"
	EventDeleted           = "space.deleted.v1"
	EventMemberAdded       = "space.member_added.v1"
	EventMemberRoleChanged = "space.member_role_changed.v1"
	EventMemberRemoved     = "space.member_removed.v1"
)

// Space member roles: editors read and write the space's content, viewers read it.
const (
	Editor = "editor"
	Viewer = "viewer"
)

// Visibility values.
const (
	Private = "private"
	Public  = "public"
)

// PersonalSlug is the slug of the space every user gets at registration.
const PersonalSlug = "personal"

// MaxNameLength bounds a space's name, in characters.
const MaxNameLength = 200

// MaxDescriptionLength bounds a space's description, in characters.
const MaxDescriptionLength = 2000

var slugRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$`)

// Created records a new space. OwnerUserID is set for personal spaces, OrgID for organization spaces.
// SubjectID is set (to the owner) for personal spaces: the name is then the owner's personal data,
// sealed under their key, and reads "[erased]" once they are erased. Events recorded before the field
// existed have no subject and keep the name as it is. Slugs are never sealed (they are reservation
// keys).
type Created struct {
	SpaceID     uuid.UUID  `json:"space_id"`
	OwnerUserID *uuid.UUID `json:"owner_user_id,omitempty"`
	SubjectID   *uuid.UUID `json:"subject_id,omitempty"`
	OrgID       *uuid.UUID `json:"org_id,omitempty"`
	Personal    bool       `json:"personal"`
	Name        string     `json:"name"`
	Slug        string     `json:"slug"`
	Visibility  string     `json:"visibility"`
	// Description is free text, possibly empty (version 2; version 1 events read as empty).
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

// UpcastCreatedV1 lifts a space.created.v1 payload to v2: a space created before descriptions
// existed has an empty one.
func UpcastCreatedV1(data json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("space.created.v1: %w", err)
	}
	if _, ok := m["description"]; !ok {
		m["description"] = json.RawMessage(`""`)
	}
	return json.Marshal(m)
}

// DescriptionChanged records a new description (possibly empty).
type DescriptionChanged struct {
	SpaceID     uuid.UUID  `json:"space_id"`
	SubjectID   *uuid.UUID `json:"subject_id,omitempty"`
	Description string     `json:"description"`
	ChangedAt   time.Time  `json:"changed_at"`
}

// PersonalData implements domain.PersonalData: the description of a personal space.
func (e *DescriptionChanged) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Description}
}

// EventName implements domain.Event.
func (DescriptionChanged) EventName() string { return EventDescribed }

// Renamed records a new name. SubjectID as in Created.
type Renamed struct {
	SpaceID   uuid.UUID  `json:"space_id"`
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	Name      string     `json:"name"`
	RenamedAt time.Time  `json:"renamed_at"`
}

// PersonalData implements domain.PersonalData: the name and description of a personal space.
func (e *Created) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Name, &e.Description}
}

// PersonalData implements domain.PersonalData: the name of a personal space.
func (e *Renamed) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Name}
}

func subject(id *uuid.UUID) uuid.UUID {
	if id == nil {
		return uuid.Nil
	}
	return *id
}

// SlugChanged records a new slug; the old one is released.
type SlugChanged struct {
	SpaceID   uuid.UUID `json:"space_id"`
	OldSlug   string    `json:"old_slug"`
	Slug      string    `json:"slug"`
	ChangedAt time.Time `json:"changed_at"`
}

// VisibilityChanged records a new visibility.
type VisibilityChanged struct {
	SpaceID    uuid.UUID `json:"space_id"`
	Visibility string    `json:"visibility"`
	ChangedAt  time.Time `json:"changed_at"`
}

// Deleted records the deletion of the space and, through it, of all its content.
type Deleted struct {
	SpaceID   uuid.UUID `json:"space_id"`
	Slug      string    `json:"slug"`
	DeletedAt time.Time `json:"deleted_at"`
}

// MemberAdded records a user given a role in the space.
type MemberAdded struct {
	SpaceID uuid.UUID `json:"space_id"`
	UserID  uuid.UUID `json:"user_id"`
	Role    string    `json:"role"`
	AddedAt time.Time `json:"added_at"`
}

// MemberRoleChanged records a space member's new role.
type MemberRoleChanged struct {
	SpaceID   uuid.UUID `json:"space_id"`
	UserID    uuid.UUID `json:"user_id"`
	Role      string    `json:"role"`
	ChangedAt time.Time `json:"changed_at"`
}

// MemberRemoved records a space member's removal.
type MemberRemoved struct {
	SpaceID   uuid.UUID `json:"space_id"`
	UserID    uuid.UUID `json:"user_id"`
	RemovedAt time.Time `json:"removed_at"`
}

// EventName implements domain.Event.
func (MemberAdded) EventName() string { return EventMemberAdded }

// EventName implements domain.Event.
func (MemberRoleChanged) EventName() string { return EventMemberRoleChanged }

// EventName implements domain.Event.
func (MemberRemoved) EventName() string { return EventMemberRemoved }

// EventName implements domain.Event.
func (Created) EventName() string { return EventCreated }

// EventName implements domain.Event.
func (Renamed) EventName() string { return EventRenamed }

// EventName implements domain.Event.
func (SlugChanged) EventName() string { return EventSlugChanged }

// EventName implements domain.Event.
func (VisibilityChanged) EventName() string { return EventVisibilityChanged }

// EventName implements domain.Event.
func (Deleted) EventName() string { return EventDeleted }

// State is a space as its events describe it.
type State struct {
	ID          uuid.UUID
	OwnerUserID *uuid.UUID
	OrgID       *uuid.UUID
	Personal    bool
	Name        string
	Slug        string
	Visibility  string
	Description string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Deleted     bool
	Members     map[uuid.UUID]string // user -> editor or viewer
	Version     int64
}

// Exists reports whether the space was created and not deleted.
func (s State) Exists() bool { return s.Version > 0 && !s.Deleted }

// CanManage reports whether actor may change or delete the space: the owner of a personal space; the
// owners and admins of an organization space's organization (orgRole is the actor's role there, "" for
// none).
func (s State) CanManage(actor uuid.UUID, orgRole string) bool {
	if s.OrgID != nil {
		return org.Rank(orgRole) >= org.Rank(org.Admin)
	}
	return s.OwnerUserID != nil && *s.OwnerUserID == actor
}

// CanRead reports whether actor may read the space: whoever may manage it; its members; for a public personal
// space anyone signed in (who has the link); for a public organization space the organization's
// members.
func (s State) CanRead(actor uuid.UUID, orgRole string) bool {
	if !s.Exists() {
		return false
	}
	if s.CanManage(actor, orgRole) {
		return true
	}
	// Members of an organization's space count only while in the organization.
	if s.Members[actor] != "" && (s.OrgID == nil || orgRole != "") {
		return true
	}
	if s.Visibility != Public {
		return false
	}
	return s.OrgID == nil || orgRole != ""
}

// CanWrite reports whether actor may write the space's content (notes, files): its managers and its
// editors (for an organization space, while they belong to the organization).
func (s State) CanWrite(actor uuid.UUID, orgRole string) bool {
	if !s.Exists() {
		return false
	}
	if s.CanManage(actor, orgRole) {
		return true
	}
	return s.Members[actor] == Editor && (s.OrgID == nil || orgRole != "")
}

// Create asks for a new space: a personal one owned by Actor, or, with OrgID, one of that
// organization, in which Actor has OrgRole ("" for none).
type Create struct {
	Actor       uuid.UUID
	OrgID       *uuid.UUID
	OrgRole     string
	SpaceID     uuid.UUID
	Personal    bool
	Name        string
	Slug        string
	Visibility  string
	Description string
}

// Update asks to change some of a space's fields; nil fields stay. ExpectedVersion, when > 0, must
// equal the space's version.
type Update struct {
	Actor           uuid.UUID
	OrgRole         string // the actor's role in the space's organization, "" for none
	ExpectedVersion int64
	Name            *string
	Slug            *string
	Visibility      *string
	Description     *string
}

// Delete asks to delete a space and its content.
type Delete struct {
	Actor           uuid.UUID
	OrgRole         string // the actor's role in the space's organization, "" for none
	ExpectedVersion int64
}

// DeleteForErasure deletes a space owned by OwnerID because its owner is being erased: unlike Delete
// it also takes the personal space, and it needs no manager (the owner is going).
type DeleteForErasure struct {
	OwnerID uuid.UUID
}

// AddMember gives UserID a role in the space. UserExists says whether such a user is registered;
// UserOrgRole is their role in the space's organization ("" for none; ignored for personal spaces).
type AddMember struct {
	Actor       uuid.UUID
	OrgRole     string
	UserID      uuid.UUID
	Role        string
	UserExists  bool
	UserOrgRole string
}

// ChangeMember gives a space member a new role.
type ChangeMember struct {
	Actor   uuid.UUID
	OrgRole string
	UserID  uuid.UUID
	Role    string
}

// RemoveMember removes a space member.
type RemoveMember struct {
	Actor   uuid.UUID
	OrgRole string
	UserID  uuid.UUID
}

// ValidSlug reports whether slug follows the slug rule.
func ValidSlug(slug string) bool { return slugRE.MatchString(slug) }

func validateName(v domain.Validation, name string) {
	if msg := domain.CheckDisplayText(name, MaxNameLength); msg != "" {
		v.Add("name", msg)
	}
}

func validateSlug(v domain.Validation, slug string) {
	if !ValidSlug(slug) {
		v.Add("slug", "must be 1-64 lower-case letters, digits or inner hyphens")
	}
}

// validateDescription allows any text up to MaxDescriptionLength characters, with line breaks and
// tabs but no other control characters.
func validateDescription(v domain.Validation, d string) {
	switch {
	case !utf8.ValidString(d):
		v.Add("description", "must be valid UTF-8")
		return
	case utf8.RuneCountInString(d) > MaxDescriptionLength:
		v.Add("description", fmt.Sprintf("must be at most %d characters", MaxDescriptionLength))
		return
	}
	for _, r := range d {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			v.Add("description", "must not contain control characters other than line breaks and tabs")
			return
		}
	}
}

func validateVisibility(v domain.Validation, vis string) {
	if vis != Private && vis != Public {
		v.Add("visibility", `must be "private" or "public"`)
	}
}

// Decide returns the events a command causes in state, or a *domain.Error: CodeInvalid for broken
// fields, CodeNotFound when the space does not exist or actor may not read it, CodeForbidden when actor
// may read but not change it, CodeVersionConflict when ExpectedVersion is stale, CodeConflict for a
// second create of the same id or deleting the personal space.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case Create:
		if s.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "space %s already exists", c.SpaceID)
		}
		v := domain.Validation{}
		validateName(v, c.Name)
		validateSlug(v, c.Slug)
		validateVisibility(v, c.Visibility)
		validateDescription(v, c.Description)
		if err := v.Err(); err != nil {
			return nil, err
		}
		desc := strings.TrimSpace(c.Description)
		if c.OrgID != nil {
			switch {
			case c.OrgRole == "":
				return nil, domain.Errorf(domain.CodeNotFound, "organization not found")
			case org.Rank(c.OrgRole) < org.Rank(org.Admin):
				return nil, domain.Errorf(domain.CodeForbidden, "only the organization's owners and admins create its spaces")
			}
			return []domain.Event{Created{SpaceID: c.SpaceID, OrgID: c.OrgID, Name: strings.TrimSpace(c.Name), Slug: c.Slug,
				Visibility: c.Visibility, Description: desc, CreatedAt: now}}, nil
		}
		owner := c.Actor
		return []domain.Event{Created{SpaceID: c.SpaceID, OwnerUserID: &owner, SubjectID: &owner, Personal: c.Personal,
			Name: strings.TrimSpace(c.Name), Slug: c.Slug, Visibility: c.Visibility, Description: desc, CreatedAt: now}}, nil
	case Update:
		if err := s.authorize(c.Actor, c.OrgRole, c.ExpectedVersion); err != nil {
			return nil, err
		}
		v := domain.Validation{}
		if c.Name != nil {
			validateName(v, *c.Name)
		}
		if c.Slug != nil {
			validateSlug(v, *c.Slug)
			if s.Personal && *c.Slug != PersonalSlug {
				v.Add("slug", "the personal space keeps the slug \"personal\"")
			}
		}
		if c.Visibility != nil {
			validateVisibility(v, *c.Visibility)
		}
		if c.Description != nil {
			validateDescription(v, *c.Description)
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		var evs []domain.Event
		if c.Name != nil && strings.TrimSpace(*c.Name) != s.Name {
			evs = append(evs, Renamed{SpaceID: s.ID, SubjectID: s.OwnerUserID, Name: strings.TrimSpace(*c.Name), RenamedAt: now})
		}
		if c.Slug != nil && *c.Slug != s.Slug {
			evs = append(evs, SlugChanged{SpaceID: s.ID, OldSlug: s.Slug, Slug: *c.Slug, ChangedAt: now})
		}
		if c.Visibility != nil && *c.Visibility != s.Visibility {
			evs = append(evs, VisibilityChanged{SpaceID: s.ID, Visibility: *c.Visibility, ChangedAt: now})
		}
		if c.Description != nil && strings.TrimSpace(*c.Description) != s.Description {
			evs = append(evs, DescriptionChanged{SpaceID: s.ID, SubjectID: s.OwnerUserID, Description: strings.TrimSpace(*c.Description), ChangedAt: now})
		}
		return evs, nil
	case Delete:
		if err := s.authorize(c.Actor, c.OrgRole, c.ExpectedVersion); err != nil {
			return nil, err
		}
		if s.Personal {
			return nil, domain.Errorf(domain.CodeConflict, "the personal space cannot be deleted")
		}
		return []domain.Event{Deleted{SpaceID: s.ID, Slug: s.Slug, DeletedAt: now}}, nil
	case DeleteForErasure:
		if !s.Exists() || s.OrgID != nil || s.OwnerUserID == nil || *s.OwnerUserID != c.OwnerID {
			return nil, domain.Errorf(domain.CodeNotFound, "space not found")
		}
		return []domain.Event{Deleted{SpaceID: s.ID, Slug: s.Slug, DeletedAt: now}}, nil
	case AddMember:
		if err := s.authorize(c.Actor, c.OrgRole, 0); err != nil {
			return nil, err
		}
		if c.Role != Editor && c.Role != Viewer {
			return nil, domain.Validation{"role": `must be "editor" or "viewer"`}.Err()
		}
		switch {
		case !c.UserExists:
			return nil, domain.Errorf(domain.CodeNotFound, "user not found")
		case s.OwnerUserID != nil && *s.OwnerUserID == c.UserID:
			return nil, domain.Errorf(domain.CodeConflict, "the user owns the space")
		case s.OrgID != nil && c.UserOrgRole == "":
			return nil, domain.Errorf(domain.CodeConflict, "the user is not a member of the space's organization")
		case s.Members[c.UserID] != "":
			return nil, domain.Errorf(domain.CodeConflict, "the user is already a member of the space")
		}
		return []domain.Event{MemberAdded{SpaceID: s.ID, UserID: c.UserID, Role: c.Role, AddedAt: now}}, nil
	case ChangeMember:
		if err := s.authorize(c.Actor, c.OrgRole, 0); err != nil {
			return nil, err
		}
		if c.Role != Editor && c.Role != Viewer {
			return nil, domain.Validation{"role": `must be "editor" or "viewer"`}.Err()
		}
		old := s.Members[c.UserID]
		if old == "" {
			return nil, domain.Errorf(domain.CodeNotFound, "member not found")
		}
		if old == c.Role {
			return nil, nil
		}
		return []domain.Event{MemberRoleChanged{SpaceID: s.ID, UserID: c.UserID, Role: c.Role, ChangedAt: now}}, nil
	case RemoveMember:
		if !s.Exists() {
			return nil, domain.Errorf(domain.CodeNotFound, "space not found")
		}
		if c.UserID != c.Actor || s.Members[c.Actor] == "" { // members may leave; otherwise managers remove
			if err := s.authorize(c.Actor, c.OrgRole, 0); err != nil {
				return nil, err
			}
		}
		if s.Members[c.UserID] == "" {
			return nil, domain.Errorf(domain.CodeNotFound, "member not found")
		}
		return []domain.Event{MemberRemoved{SpaceID: s.ID, UserID: c.UserID, RemovedAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "space: unknown command %T", cmd)
	}
}

func (s State) authorize(actor uuid.UUID, orgRole string, expected int64) error {
	if !s.CanRead(actor, orgRole) {
		return domain.Errorf(domain.CodeNotFound, "space not found")
	}
	if !s.CanManage(actor, orgRole) {
		return domain.Errorf(domain.CodeForbidden, "only the space's owner, or its organization's owners and admins, may change it")
	}
	if expected > 0 && expected != s.Version {
		return domain.Errorf(domain.CodeVersionConflict, "space is at version %d, not %d", s.Version, expected)
	}
	return nil
}

// Evolve applies one event to state. It never fails: unknown events only advance the version.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Created:
		s.ID, s.OwnerUserID, s.OrgID, s.Personal = e.SpaceID, e.OwnerUserID, e.OrgID, e.Personal
		s.Name, s.Slug, s.Visibility, s.Description = e.Name, e.Slug, e.Visibility, e.Description
		s.CreatedAt, s.UpdatedAt = e.CreatedAt, e.CreatedAt
	case DescriptionChanged:
		s.Description, s.UpdatedAt = e.Description, e.ChangedAt
	case Renamed:
		s.Name, s.UpdatedAt = e.Name, e.RenamedAt
	case SlugChanged:
		s.Slug, s.UpdatedAt = e.Slug, e.ChangedAt
	case VisibilityChanged:
		s.Visibility, s.UpdatedAt = e.Visibility, e.ChangedAt
	case Deleted:
		s.Deleted, s.UpdatedAt = true, e.DeletedAt
	case MemberAdded:
		s.Members = copyMembers(s.Members)
		s.Members[e.UserID], s.UpdatedAt = e.Role, e.AddedAt
	case MemberRoleChanged:
		s.Members = copyMembers(s.Members)
		s.Members[e.UserID], s.UpdatedAt = e.Role, e.ChangedAt
	case MemberRemoved:
		s.Members = copyMembers(s.Members)
		delete(s.Members, e.UserID)
		s.UpdatedAt = e.RemovedAt
	}
	return s
}

func copyMembers(m map[uuid.UUID]string) map[uuid.UUID]string {
	out := make(map[uuid.UUID]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// SlugScope is the reservation scope that keeps slugs unique per owner (a user or an organization).
func SlugScope(owner uuid.UUID) string { return "space.slug:" + owner.String() }

// Owner returns the id slugs are unique under: the organization, or the owning user.
func (s State) Owner() uuid.UUID {
	if s.OrgID != nil {
		return *s.OrgID
	}
	if s.OwnerUserID != nil {
		return *s.OwnerUserID
	}
	return uuid.Nil
}
