// Package note is the note aggregate: a titled Markdown text in a space, every edit kept as a revision.
package note

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// StreamType names the event streams of notes.
const StreamType = "note"

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventCreated = "note.created.v1"
	EventEdited  = "note.edited.v1"
	EventDeleted = "note.deleted.v1"
)

// Limits.
const (
	MaxTitleLength = 200       // characters
	MaxBodyBytes   = 512 << 10 // bytes of UTF-8; a JSON request carrying it stays under the 1 MiB body limit
)

// Created records a new note; it is the note's first revision. SubjectID is set for a note in a
// personal space (owned by a user): its title and body are then that user's personal data, sealed
// under their key, so erasing the user makes them unreadable. Events recorded before the field
// existed have no subject and keep their text as it is.
type Created struct {
	NoteID    uuid.UUID  `json:"note_id"`
	SpaceID   uuid.UUID  `json:"space_id"`
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	Title     string     `json:"title"`
	Body      string     `json:"body"`
	CreatedAt time.Time  `json:"created_at"`
}

// Edited records a new revision: the whole title and body as they now are. SubjectID as in Created.
type Edited struct {
	NoteID    uuid.UUID  `json:"note_id"`
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	Title     string     `json:"title"`
	Body      string     `json:"body"`
	EditedAt  time.Time  `json:"edited_at"`
}

// PersonalData implements domain.PersonalData: title and body, for notes of personal spaces.
func (e *Created) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Title, &e.Body}
}

// PersonalData implements domain.PersonalData: title and body, for notes of personal spaces.
func (e *Edited) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Title, &e.Body}
}

func subject(id *uuid.UUID) uuid.UUID {
	if id == nil {
		return uuid.Nil
	}
	return *id
}

// Deleted records the deletion of the note.
type Deleted struct {
	NoteID    uuid.UUID `json:"note_id"`
	DeletedAt time.Time `json:"deleted_at"`
}

func (Created) EventName() string { return EventCreated }
func (Edited) EventName() string  { return EventEdited }
func (Deleted) EventName() string { return EventDeleted }

// State is a note as its events leave it.
type State struct {
	ID        uuid.UUID
	SpaceID   uuid.UUID
	Title     string
	Body      string
	CreatedAt time.Time
	UpdatedAt time.Time
	Deleted   bool
	Version   int64
}

// Exists reports whether the note was created and not deleted.
func (s State) Exists() bool { return s.Version > 0 && !s.Deleted }

// Access is what the actor may do in the note's space, as the space aggregate decides it.
type Access struct {
	Read, Write bool
}

// Create asks for a new note in a space. Subject is the owner of a personal space (nil for an
// organization's space): the person whose key seals the note's text.
type Create struct {
	NoteID  uuid.UUID
	SpaceID uuid.UUID
	Subject *uuid.UUID
	Access  Access
	Title   string
	Body    string
}

// Edit asks to change the title, the body or both (nil stays). ExpectedVersion, when > 0, must equal
// the note's version.
type Edit struct {
	Subject         *uuid.UUID // as in Create
	Access          Access
	ExpectedVersion int64
	Title           *string
	Body            *string
}

// Delete asks to delete the note.
type Delete struct {
	Access          Access
	ExpectedVersion int64
}

func validateTitle(v domain.Validation, title string) {
	if msg := domain.CheckDisplayText(title, MaxTitleLength); msg != "" {
		v.Add("title", msg)
	}
}

func validateBody(v domain.Validation, body string) {
	switch {
	case !utf8.ValidString(body):
		v.Add("body", "must be valid UTF-8")
	case len(body) > MaxBodyBytes:
		v.Add("body", fmt.Sprintf("must be at most %d bytes", MaxBodyBytes))
	case strings.ContainsRune(body, 0):
		v.Add("body", "must not contain NUL characters")
	}
}

// Decide returns the events a command causes in state, or a *domain.Error: CodeInvalid for broken
// fields, CodeNotFound when the note (or its space, for the actor) does not exist, CodeForbidden when
// the actor may read the space but not write in it, CodeVersionConflict when ExpectedVersion is
// stale, CodeConflict for a second create of the same id.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case Create:
		if s.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "note %s already exists", c.NoteID)
		}
		if err := authorize(c.Access); err != nil {
			return nil, err
		}
		v := domain.Validation{}
		validateTitle(v, c.Title)
		validateBody(v, c.Body)
		if err := v.Err(); err != nil {
			return nil, err
		}
		return []domain.Event{Created{NoteID: c.NoteID, SpaceID: c.SpaceID, SubjectID: c.Subject, Title: strings.TrimSpace(c.Title), Body: c.Body, CreatedAt: now}}, nil
	case Edit:
		if err := s.authorize(c.Access, c.ExpectedVersion); err != nil {
			return nil, err
		}
		v := domain.Validation{}
		title, body := s.Title, s.Body
		if c.Title != nil {
			validateTitle(v, *c.Title)
			title = strings.TrimSpace(*c.Title)
		}
		if c.Body != nil {
			validateBody(v, *c.Body)
			body = *c.Body
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		if title == s.Title && body == s.Body {
			return nil, nil
		}
		return []domain.Event{Edited{NoteID: s.ID, SubjectID: c.Subject, Title: title, Body: body, EditedAt: now}}, nil
	case Delete:
		if err := s.authorize(c.Access, c.ExpectedVersion); err != nil {
			return nil, err
		}
		return []domain.Event{Deleted{NoteID: s.ID, DeletedAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "note: unknown command %T", cmd)
	}
}

func authorize(a Access) error {
	switch {
	case !a.Read:
		return domain.Errorf(domain.CodeNotFound, "space not found")
	case !a.Write:
		return domain.Errorf(domain.CodeForbidden, "only the space's editors and managers write its notes")
	}
	return nil
}

func (s State) authorize(a Access, expected int64) error {
	if !s.Exists() || !a.Read {
		return domain.Errorf(domain.CodeNotFound, "note not found")
	}
	if err := authorize(a); err != nil {
		return err
	}
	if expected > 0 && expected != s.Version {
		return domain.Errorf(domain.CodeVersionConflict, "note is at version %d, not %d", s.Version, expected)
	}
	return nil
}

// Evolve applies one event to state. It never fails: unknown events only advance the version.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Created:
		s.ID, s.SpaceID, s.Title, s.Body = e.NoteID, e.SpaceID, e.Title, e.Body
		s.CreatedAt, s.UpdatedAt = e.CreatedAt, e.CreatedAt
	case Edited:
		s.Title, s.Body, s.UpdatedAt = e.Title, e.Body, e.EditedAt
	case Deleted:
		s.Deleted, s.UpdatedAt = true, e.DeletedAt
	}
	return s
}
