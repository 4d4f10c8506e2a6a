// Package user is the user aggregate: registration and profile. Decide validates commands and returns
// events; Evolve applies events and never fails.
package user

import (
	"net/mail"
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

// State is a user as its events describe it.
type State struct {
	ID              uuid.UUID
	Email           string
	Name            string
	PasswordHash    string
	PersonalSpaceID uuid.UUID
	CreatedAt       time.Time
	Version         int64
}

// Exists reports whether the user has been registered.
func (s State) Exists() bool { return s.Version > 0 }

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
		if s.Exists() {
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
	default:
		return nil, domain.Errorf(domain.CodeInternal, "user: unknown command %T", cmd)
	}
}

// Evolve applies one event to state. It never fails: unknown events only advance the version.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Registered:
		s.ID, s.Email, s.Name, s.PasswordHash = e.UserID, e.Email, e.Name, e.PasswordHash
		s.PersonalSpaceID, s.CreatedAt = e.PersonalSpaceID, e.RegisteredAt
	}
	return s
}
