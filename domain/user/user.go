// Package user is the user aggregate: registration and profile. Decide validates commands and returns
// events; Evolve applies events and never fails.
package user

import (
	"net/mail"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// StreamType names the event streams of users.
const StreamType = "user"

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventRegistered = "user.registered.v1"
	EventErased     = "user.erased.v1"
)

// Field limits.
const (
	MinPasswordLength = 12
	MaxPasswordLength = 1024
	MaxNameLength     = 200
	MaxEmailLength    = 254
)

// Registered records a new user. Email, name and password hash are personal data: the event store
// encrypts them with the user's key, so erasure makes them unreadable in the log.
type Registered struct {
	UserID          uuid.UUID `json:"user_id"`
	Email           string    `json:"email"`
	Name            string    `json:"name"`
	PasswordHash    string    `json:"password_hash"`
	PersonalSpaceID uuid.UUID `json:"personal_space_id"`
	RegisteredAt    time.Time `json:"registered_at"`
}

// EventName implements domain.Event.
func (Registered) EventName() string { return EventRegistered }

// PersonalData implements domain.PersonalData.
func (e *Registered) PersonalData() (uuid.UUID, []*string) {
	return e.UserID, []*string{&e.Email, &e.Name, &e.PasswordHash}
}

// Erased records that a user was forgotten at their own request. It carries no personal data: the
// user's key (and the keys of the invitations addressed to their email, InvitationIDs) are destroyed
// right after it is appended, and again by the erasure projector, so every sealed field about them
// reads as domain.ErasedValue from then on.
type Erased struct {
	UserID        uuid.UUID   `json:"user_id"`
	InvitationIDs []uuid.UUID `json:"invitation_ids,omitempty"`
	ErasedAt      time.Time   `json:"erased_at"`
}

// EventName implements domain.Event.
func (Erased) EventName() string { return EventErased }

// Subjects returns every subject whose key the erasure destroys: the user, then the invitations.
func (e Erased) Subjects() []uuid.UUID {
	return append([]uuid.UUID{e.UserID}, e.InvitationIDs...)
}

// State is a user as its events describe it.
type State struct {
	ID              uuid.UUID
	Email           string
	Name            string
	PasswordHash    string
	PersonalSpaceID uuid.UUID
	CreatedAt       time.Time
	Erased          bool
	ErasedAt        time.Time
	Version         int64
}

// Exists reports whether the user has been registered and not erased.
func (s State) Exists() bool { return s.Version > 0 && !s.Erased }

// Register asks to create a user. Password is the clear text (validated, never stored);
// PasswordHash is its hash, computed by the caller because hashing is not the domain's business.
type Register struct {
	UserID          uuid.UUID
	Email           string
	Name            string
	Password        string
	PasswordHash    string
	PersonalSpaceID uuid.UUID
}

// Erase asks to forget a user. Only the user may ask (Actor), and only after confirming with their
// password (PasswordVerified, checked by the caller because hashing is not the domain's business).
// SoleOwned lists the organizations (id → name) in which the user is the only owner: each must be
// handed over or deleted first. InvitationIDs are the invitations addressed to the user's email.
type Erase struct {
	Actor            uuid.UUID
	PasswordVerified bool
	SoleOwned        map[uuid.UUID]string
	InvitationIDs    []uuid.UUID
}

// NormalizeEmail returns the form under which an email is stored and compared: trimmed and lower-case.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// ValidateRegister checks a registration's fields; it returns a CodeInvalid *domain.Error naming each
// broken field. Decide calls it too; callers may call it before hashing the password.
func ValidateRegister(c Register) error {
	v := domain.Validation{}
	if msg := CheckEmail(c.Email); msg != "" {
		v.Add("email", msg)
	}
	if msg := ValidateName(c.Name); msg != "" {
		v.Add("name", msg)
	}
	switch n := utf8.RuneCountInString(c.Password); {
	case n < MinPasswordLength:
		v.Add("password", "must be at least 12 characters")
	case n > MaxPasswordLength:
		v.Add("password", "must be at most 1024 characters")
	}
	return v.Err()
}

// CheckEmail returns why email (normalised first) is not an acceptable address, or "".
func CheckEmail(email string) string {
	email = NormalizeEmail(email)
	switch {
	case email == "":
		return "is required"
	case len(email) > MaxEmailLength:
		return "must be at most 254 characters"
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || a.Name != "" {
		return "must be a plain address such as ada@example.com"
	}
	return ""
}

// ValidateName returns why name is not acceptable as a display name, or "".
func ValidateName(name string) string { return domain.CheckDisplayText(name, MaxNameLength) }

// Decide returns the events a command causes in state, or a *domain.Error:
// CodeInvalid for broken fields, CodeConflict when the user already exists.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	switch c := cmd.(type) {
	case Register:
		if s.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "user %s already exists", c.UserID)
		}
		if err := ValidateRegister(c); err != nil {
			return nil, err
		}
		if c.PasswordHash == "" || c.UserID == uuid.Nil || c.PersonalSpaceID == uuid.Nil {
			return nil, domain.Errorf(domain.CodeInternal, "register: missing hash or ids")
		}
		return []domain.Event{Registered{
			UserID:          c.UserID,
			Email:           NormalizeEmail(c.Email),
			Name:            strings.TrimSpace(c.Name),
			PasswordHash:    c.PasswordHash,
			PersonalSpaceID: c.PersonalSpaceID,
			RegisteredAt:    now.UTC(),
		}}, nil
	case Erase:
		if !s.Exists() || c.Actor != s.ID {
			return nil, domain.Errorf(domain.CodeNotFound, "user not found")
		}
		if !c.PasswordVerified {
			return nil, domain.Errorf(domain.CodeForbidden, "the password is wrong; erasure needs the account's current password")
		}
		if len(c.SoleOwned) > 0 {
			return nil, soleOwner(c.SoleOwned)
		}
		ids := append([]uuid.UUID(nil), c.InvitationIDs...)
		sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
		return []domain.Event{Erased{UserID: s.ID, InvitationIDs: ids, ErasedAt: now.UTC()}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "user: unknown command %T", cmd)
	}
}

// soleOwner is the conflict that lists the organizations a user must hand over or delete before
// erasure: Details maps each organization's id to its name.
func soleOwner(orgs map[uuid.UUID]string) error {
	names := make([]string, 0, len(orgs))
	details := make(map[string]string, len(orgs))
	for id, name := range orgs {
		names = append(names, name)
		details[id.String()] = name
	}
	sort.Strings(names)
	return &domain.Error{Code: domain.CodeConflict, Details: details,
		Message: "you are the only owner of " + strings.Join(names, ", ") +
			"; make another member owner or delete each of these organizations before erasing your account (details: organization id → name)"}
}

// Evolve applies one event to state. It never fails: unknown events only advance the version.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Registered:
		s.ID, s.Email, s.Name, s.PasswordHash = e.UserID, e.Email, e.Name, e.PasswordHash
		s.PersonalSpaceID, s.CreatedAt = e.PersonalSpaceID, e.RegisteredAt
	case Erased:
		s.Erased, s.ErasedAt = true, e.ErasedAt
		s.Email, s.Name, s.PasswordHash = domain.ErasedValue, domain.ErasedValue, ""
	}
	return s
}
