// Package apikey is the API key aggregate: a long-lived credential a user creates, names and revokes.
// Only the key's SHA-256 is ever recorded; the key itself is shown once, at creation.
package apikey

import (
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// StreamType names the event streams of API keys.
const StreamType = "api_key"

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventCreated = "api_key.created.v1"
	EventRevoked = "api_key.revoked.v1"
)

// MaxNameLength bounds a key's name, in characters.
const MaxNameLength = 100

// Created records a new key of UserID. KeyHash is the hex SHA-256 of the key; Prefix is the key's
// first characters, shown in listings so a user can tell keys apart. The name is free text of the
// user's and so their personal data: SubjectID (the user) seals it under their key. Keys created
// before the field existed have no subject and keep their name as it is.
type Created struct {
	KeyID     uuid.UUID  `json:"key_id"`
	UserID    uuid.UUID  `json:"user_id"`
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	Name      string     `json:"name"`
	KeyHash   string     `json:"key_hash"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
}

// PersonalData implements domain.PersonalData: the key's name.
func (e *Created) PersonalData() (uuid.UUID, []*string) {
	if e.SubjectID == nil {
		return uuid.Nil, nil
	}
	return *e.SubjectID, []*string{&e.Name}
}

// Revoked records that the key no longer authenticates anyone.
type Revoked struct {
	KeyID     uuid.UUID `json:"key_id"`
	RevokedAt time.Time `json:"revoked_at"`
}

// EventName implements domain.Event.
func (Created) EventName() string { return EventCreated }

// EventName implements domain.Event.
func (Revoked) EventName() string { return EventRevoked }

// State is a key as its events describe it.
type State struct {
	ID        uuid.UUID
	UserID    uuid.UUID
	Name      string
	KeyHash   string
	Prefix    string
	CreatedAt time.Time
	RevokedAt *time.Time
	Version   int64
}

// Create asks for a new key for Actor.
type Create struct {
	Actor   uuid.UUID
	KeyID   uuid.UUID
	Name    string
	KeyHash string
	Prefix  string
}

// Revoke asks to revoke a key.
type Revoke struct {
	Actor uuid.UUID
}

// Decide returns the events a command causes, or a *domain.Error: CodeInvalid for a bad name,
// CodeNotFound for a key that does not exist, is not the actor's, or is already revoked, CodeConflict
// for a second create of one id.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case Create:
		if s.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "api key %s already exists", c.KeyID)
		}
		if msg := domain.CheckDisplayText(c.Name, MaxNameLength); msg != "" {
			return nil, domain.Validation{"name": msg}.Err()
		}
		if c.KeyHash == "" || c.Actor == uuid.Nil {
			return nil, domain.Errorf(domain.CodeInternal, "api key: missing hash or actor")
		}
		subject := c.Actor
		return []domain.Event{Created{KeyID: c.KeyID, UserID: c.Actor, SubjectID: &subject, Name: strings.TrimSpace(c.Name),
			KeyHash: c.KeyHash, Prefix: c.Prefix, CreatedAt: now}}, nil
	case Revoke:
		if s.Version == 0 || s.UserID != c.Actor || s.RevokedAt != nil {
			return nil, domain.Errorf(domain.CodeNotFound, "api key not found")
		}
		return []domain.Event{Revoked{KeyID: s.ID, RevokedAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "api key: unknown command %T", cmd)
	}
}

// Evolve applies one event to state. It never fails.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Created:
		s.ID, s.UserID, s.Name, s.KeyHash, s.Prefix, s.CreatedAt = e.KeyID, e.UserID, e.Name, e.KeyHash, e.Prefix, e.CreatedAt
	case Revoked:
		t := e.RevokedAt
		s.RevokedAt = &t
	}
	return s
}
