// Package file holds the file and folder aggregates: files with versioned content in blob storage,
// a visibility and public links, in a tree of virtual folders within a space.
package file

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// Stream types.
const (
	StreamType       = "file"
	FolderStreamType = "folder"
)

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventUploaded          = "file.uploaded.v1"
	EventVersionAdded      = "file.version_added.v1"
	EventRenamed           = "file.renamed.v1"
	EventMoved             = "file.moved.v1"
	EventVisibilityChanged = "file.visibility_changed.v1"
	EventDeleted           = "file.deleted.v1"
	EventLinkCreated       = "file.link_created.v1"
	EventLinkRevoked       = "file.link_revoked.v1"
	EventFolderCreated     = "folder.created.v1"
	EventFolderRenamed     = "folder.renamed.v1"
	EventFolderMoved       = "folder.moved.v1"
	EventFolderDeleted     = "folder.deleted.v1"
)

// Visibility values: who may read a file besides its uploader.
const (
	Private      = "private"      // the uploader only
	Space        = "space"        // whoever may read the space
	Organization = "organization" // the members of the space's organization
	Public       = "public"       // anyone signed in, and anyone with a live public link
)

// MaxNameLength bounds file and folder names, in characters.
const MaxNameLength = 255

// MaxDepth bounds how deep a folder chain may be before it is taken for a corrupt (cyclic) tree.
// Folders themselves may nest to any depth below it.
const MaxDepth = 1000

// Content is one stored version of a file's bytes.
type Content struct {
	Version     int64     `json:"version"`
	BlobKey     string    `json:"blob_key"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	UploadedBy  uuid.UUID `json:"uploaded_by"`
	UploadedAt  time.Time `json:"uploaded_at"`
}

// Uploaded records a new file with its first version.
type Uploaded struct {
	FileID     uuid.UUID  `json:"file_id"`
	SpaceID    uuid.UUID  `json:"space_id"`
	SubjectID  *uuid.UUID `json:"subject_id,omitempty"`
	FolderID   *uuid.UUID `json:"folder_id,omitempty"`
	Name       string     `json:"name"`
	Visibility string     `json:"visibility"`
	Content    Content    `json:"content"`
}

// VersionAdded records new content; earlier versions stay.
type VersionAdded struct {
	FileID  uuid.UUID `json:"file_id"`
	Content Content   `json:"content"`
}

// Renamed records a new name.
type Renamed struct {
	FileID    uuid.UUID  `json:"file_id"`
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	Name      string     `json:"name"`
	RenamedAt time.Time  `json:"renamed_at"`
}

// SubjectID, on the events that carry a file's or folder's name, is set in a personal space (owned by
// a user): the name is then that user's personal data, sealed under their key, so erasing the user
// makes it unreadable. Events recorded before the field existed have no subject and keep the name as
// it is.

// PersonalData implements domain.PersonalData: the name, in personal spaces.
func (e *Uploaded) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Name}
}

// PersonalData implements domain.PersonalData: the name, in personal spaces.
func (e *Renamed) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Name}
}

func subject(id *uuid.UUID) uuid.UUID {
	if id == nil {
		return uuid.Nil
	}
	return *id
}

// Moved records a new folder (none: the space's root).
type Moved struct {
	FileID   uuid.UUID  `json:"file_id"`
	FolderID *uuid.UUID `json:"folder_id,omitempty"`
	MovedAt  time.Time  `json:"moved_at"`
}

// VisibilityChanged records a new visibility.
type VisibilityChanged struct {
	FileID     uuid.UUID `json:"file_id"`
	Visibility string    `json:"visibility"`
	ChangedAt  time.Time `json:"changed_at"`
}

// Deleted records the deletion of the file; BlobKeys are the keys of every version, for the reactor
// that deletes the content.
type Deleted struct {
	FileID    uuid.UUID `json:"file_id"`
	BlobKeys  []string  `json:"blob_keys"`
	DeletedAt time.Time `json:"deleted_at"`
}

// LinkCreated records a public link; only the SHA-256 of its token is kept.
type LinkCreated struct {
	FileID    uuid.UUID  `json:"file_id"`
	LinkID    uuid.UUID  `json:"link_id"`
	TokenHash string     `json:"token_hash"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// LinkRevoked records that a public link stops working.
type LinkRevoked struct {
	FileID    uuid.UUID `json:"file_id"`
	LinkID    uuid.UUID `json:"link_id"`
	RevokedAt time.Time `json:"revoked_at"`
}

func (Uploaded) EventName() string          { return EventUploaded }
func (VersionAdded) EventName() string      { return EventVersionAdded }
func (Renamed) EventName() string           { return EventRenamed }
func (Moved) EventName() string             { return EventMoved }
func (VisibilityChanged) EventName() string { return EventVisibilityChanged }
func (Deleted) EventName() string           { return EventDeleted }
func (LinkCreated) EventName() string       { return EventLinkCreated }
func (LinkRevoked) EventName() string       { return EventLinkRevoked }

// Link is a public link as the file's events leave it.
type Link struct {
	ID        uuid.UUID
	TokenHash string
	ExpiresAt *time.Time
	CreatedAt time.Time
	Revoked   bool
}

// Live reports whether the link serves content at now (the file must also be public).
func (l Link) Live(now time.Time) bool {
	return !l.Revoked && (l.ExpiresAt == nil || now.Before(*l.ExpiresAt))
}

// State is a file as its events leave it.
type State struct {
	ID         uuid.UUID
	SpaceID    uuid.UUID
	FolderID   *uuid.UUID
	Name       string
	Visibility string
	UploadedBy uuid.UUID // the first version's uploader: the owner for "private"
	Versions   []Content // oldest first; Versions[len-1] is current
	Links      []Link
	CreatedAt  time.Time
	UpdatedAt  time.Time
	Deleted    bool
	Version    int64 // stream version
}

// Exists reports whether the file was uploaded and not deleted.
func (s State) Exists() bool { return s.Version > 0 && !s.Deleted }

// Current is the latest content.
func (s State) Current() Content {
	if len(s.Versions) == 0 {
		return Content{}
	}
	return s.Versions[len(s.Versions)-1]
}

// ContentVersion returns content version n (1-based) and whether it exists.
func (s State) ContentVersion(n int64) (Content, bool) {
	if n < 1 || n > int64(len(s.Versions)) {
		return Content{}, false
	}
	return s.Versions[n-1], true
}

// Link returns the link with the token hash, if any.
func (s State) Link(tokenHash string) (Link, bool) {
	for _, l := range s.Links {
		if l.TokenHash == tokenHash {
			return l, true
		}
	}
	return Link{}, false
}

// Viewer is what a caller is, relative to a file's space: what the space aggregate and the
// organization say.
type Viewer struct {
	ID              uuid.UUID
	SpaceLive       bool // the space exists (a deleted space's files are gone, whatever their visibility)
	ReadSpace       bool // may read the space
	WriteSpace      bool // may write the space's content (editors, managers)
	OrgMember       bool // belongs to the space's organization (organization spaces only)
	SpaceIsPersonal bool
	// SpaceOwner is the user who owns a personal space (nil for an organization's space): file and
	// folder names there are their personal data, sealed under their key.
	SpaceOwner *uuid.UUID
}

// CanRead reports whether v may read the file's metadata and content.
func (s State) CanRead(v Viewer) bool {
	if !s.Exists() || !v.SpaceLive {
		return false
	}
	switch s.Visibility {
	case Public:
		return true
	case Organization:
		return v.OrgMember || v.ReadSpace
	case Space:
		return v.ReadSpace
	default:
		return v.ReadSpace && v.ID == s.UploadedBy
	}
}

// CanWrite reports whether v may change or delete the file: who can read it and write the space.
func (s State) CanWrite(v Viewer) bool { return s.CanRead(v) && v.WriteSpace }

// ValidName reports why name is not acceptable as a file or folder name, or "": 1-255 characters, no
// "/", no control characters, not "." or "..".
func ValidName(name string) string {
	switch {
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case strings.TrimSpace(name) == "":
		return "is required"
	case utf8.RuneCountInString(name) > MaxNameLength:
		return "must be at most 255 characters"
	case strings.Contains(name, "/"):
		return `must not contain "/"`
	case name == "." || name == "..":
		return `must not be "." or ".."`
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "must not contain control characters"
		}
	}
	return ""
}

// ValidVisibility reports why vis is not acceptable for a file in a space, or "".
func ValidVisibility(vis string, personalSpace bool) string {
	switch vis {
	case Private, Space, Public:
		return ""
	case Organization:
		if personalSpace {
			return `"organization" is for files of organization spaces`
		}
		return ""
	}
	return `must be "private", "space", "organization" or "public"`
}

// Upload asks for a new file. The content is already in the bucket; FolderOK says the folder (if
// any) exists in the space and the viewer may read it.
type Upload struct {
	FileID     uuid.UUID
	SpaceID    uuid.UUID
	FolderID   *uuid.UUID
	FolderOK   bool
	Viewer     Viewer
	Name       string
	Visibility string
	Content    Content
}

// AddVersion asks to store new content as the next version.
type AddVersion struct {
	Viewer          Viewer
	ExpectedVersion int64
	Content         Content
}

// Update asks to change some of a file's fields (nil stays).
type Update struct {
	Viewer          Viewer
	ExpectedVersion int64
	Name            *string
	FolderID        **uuid.UUID // set to move; *FolderID nil moves to the root
	FolderOK        bool
	Visibility      *string
}

// Delete asks to delete the file and, afterwards, the content of every version.
type Delete struct {
	Viewer          Viewer
	ExpectedVersion int64
}

// CreateLink asks for a public link with a token whose hash is TokenHash.
type CreateLink struct {
	Viewer    Viewer
	LinkID    uuid.UUID
	TokenHash string
	ExpiresAt *time.Time
}

// RevokeLink asks to revoke a link.
type RevokeLink struct {
	Viewer Viewer
	LinkID uuid.UUID
}

func (s State) authorize(v Viewer, expected int64) error {
	if !s.CanRead(v) {
		return domain.Errorf(domain.CodeNotFound, "file not found")
	}
	if !s.CanWrite(v) {
		return domain.Errorf(domain.CodeForbidden, "only the space's editors and managers change its files")
	}
	if expected > 0 && expected != s.Version {
		return domain.Errorf(domain.CodeVersionConflict, "file is at version %d, not %d", s.Version, expected)
	}
	return nil
}

// Decide returns the events a command causes in state, or a *domain.Error: CodeInvalid for broken
// fields, CodeNotFound for a file, space or folder the viewer may not see, CodeForbidden when the
// viewer may read but not write, CodeVersionConflict for a stale ExpectedVersion.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case Upload:
		if s.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "file %s already exists", c.FileID)
		}
		switch {
		case !c.Viewer.ReadSpace:
			return nil, domain.Errorf(domain.CodeNotFound, "space not found")
		case !c.Viewer.WriteSpace:
			return nil, domain.Errorf(domain.CodeForbidden, "only the space's editors and managers upload files")
		case c.FolderID != nil && !c.FolderOK:
			return nil, domain.Errorf(domain.CodeNotFound, "folder not found")
		}
		v := domain.Validation{}
		if msg := ValidName(c.Name); msg != "" {
			v.Add("name", msg)
		}
		if msg := ValidVisibility(c.Visibility, c.Viewer.SpaceIsPersonal); msg != "" {
			v.Add("visibility", msg)
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		content := c.Content
		content.Version, content.UploadedBy, content.UploadedAt = 1, c.Viewer.ID, now
		return []domain.Event{Uploaded{FileID: c.FileID, SpaceID: c.SpaceID, SubjectID: c.Viewer.SpaceOwner, FolderID: c.FolderID, Name: c.Name,
			Visibility: c.Visibility, Content: content}}, nil
	case AddVersion:
		if err := s.authorize(c.Viewer, c.ExpectedVersion); err != nil {
			return nil, err
		}
		content := c.Content
		content.Version, content.UploadedBy, content.UploadedAt = int64(len(s.Versions))+1, c.Viewer.ID, now
		return []domain.Event{VersionAdded{FileID: s.ID, Content: content}}, nil
	case Update:
		if err := s.authorize(c.Viewer, c.ExpectedVersion); err != nil {
			return nil, err
		}
		if c.FolderID != nil && *c.FolderID != nil && !c.FolderOK {
			return nil, domain.Errorf(domain.CodeNotFound, "folder not found")
		}
		v := domain.Validation{}
		if c.Name != nil {
			if msg := ValidName(*c.Name); msg != "" {
				v.Add("name", msg)
			}
		}
		if c.Visibility != nil {
			if msg := ValidVisibility(*c.Visibility, c.Viewer.SpaceIsPersonal); msg != "" {
				v.Add("visibility", msg)
			}
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		var evs []domain.Event
		if c.Name != nil && *c.Name != s.Name {
			evs = append(evs, Renamed{FileID: s.ID, SubjectID: c.Viewer.SpaceOwner, Name: *c.Name, RenamedAt: now})
		}
		if c.FolderID != nil && !sameFolder(*c.FolderID, s.FolderID) {
			evs = append(evs, Moved{FileID: s.ID, FolderID: *c.FolderID, MovedAt: now})
		}
		if c.Visibility != nil && *c.Visibility != s.Visibility {
			evs = append(evs, VisibilityChanged{FileID: s.ID, Visibility: *c.Visibility, ChangedAt: now})
		}
		return evs, nil
	case Delete:
		if err := s.authorize(c.Viewer, c.ExpectedVersion); err != nil {
			return nil, err
		}
		keys := make([]string, len(s.Versions))
		for i, v := range s.Versions {
			keys[i] = v.BlobKey
		}
		return []domain.Event{Deleted{FileID: s.ID, BlobKeys: keys, DeletedAt: now}}, nil
	case CreateLink:
		if err := s.authorize(c.Viewer, 0); err != nil {
			return nil, err
		}
		if c.ExpiresAt != nil && !c.ExpiresAt.After(now) {
			return nil, domain.Validation{"expires_at": "must be in the future"}.Err()
		}
		return []domain.Event{LinkCreated{FileID: s.ID, LinkID: c.LinkID, TokenHash: c.TokenHash, ExpiresAt: c.ExpiresAt, CreatedAt: now}}, nil
	case RevokeLink:
		if err := s.authorize(c.Viewer, 0); err != nil {
			return nil, err
		}
		for _, l := range s.Links {
			if l.ID == c.LinkID && !l.Revoked {
				return []domain.Event{LinkRevoked{FileID: s.ID, LinkID: c.LinkID, RevokedAt: now}}, nil
			}
		}
		return nil, domain.Errorf(domain.CodeNotFound, "link not found")
	default:
		return nil, domain.Errorf(domain.CodeInternal, "file: unknown command %T", cmd)
	}
}

func sameFolder(a, b *uuid.UUID) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Evolve applies one event to state. It never fails: unknown events only advance the version.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Uploaded:
		s.ID, s.SpaceID, s.FolderID, s.Name, s.Visibility = e.FileID, e.SpaceID, e.FolderID, e.Name, e.Visibility
		s.UploadedBy, s.Versions = e.Content.UploadedBy, []Content{e.Content}
		s.CreatedAt, s.UpdatedAt = e.Content.UploadedAt, e.Content.UploadedAt
	case VersionAdded:
		s.Versions = append(append([]Content(nil), s.Versions...), e.Content)
		s.UpdatedAt = e.Content.UploadedAt
	case Renamed:
		s.Name, s.UpdatedAt = e.Name, e.RenamedAt
	case Moved:
		s.FolderID, s.UpdatedAt = e.FolderID, e.MovedAt
	case VisibilityChanged:
		s.Visibility, s.UpdatedAt = e.Visibility, e.ChangedAt
	case Deleted:
		s.Deleted, s.UpdatedAt = true, e.DeletedAt
	case LinkCreated:
		s.Links = append(append([]Link(nil), s.Links...), Link{ID: e.LinkID, TokenHash: e.TokenHash, ExpiresAt: e.ExpiresAt, CreatedAt: e.CreatedAt})
	case LinkRevoked:
		links := append([]Link(nil), s.Links...)
		for i := range links {
			if links[i].ID == e.LinkID {
				links[i].Revoked = true
			}
		}
		s.Links = links
	}
	return s
}
