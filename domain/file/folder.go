package file

import (
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// FolderCreated records a new folder in a space, under ParentID (none: the root).
type FolderCreated struct {
	FolderID  uuid.UUID  `json:"folder_id"`
	SpaceID   uuid.UUID  `json:"space_id"`
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	ParentID  *uuid.UUID `json:"parent_id,omitempty"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
}

// FolderRenamed records a new name.
type FolderRenamed struct {
	FolderID  uuid.UUID  `json:"folder_id"`
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	Name      string     `json:"name"`
	RenamedAt time.Time  `json:"renamed_at"`
}

// PersonalData implements domain.PersonalData: the name, in personal spaces (see Renamed).
func (e *FolderCreated) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Name}
}

// PersonalData implements domain.PersonalData: the name, in personal spaces (see Renamed).
func (e *FolderRenamed) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Name}
}

// FolderMoved records a new parent (none: the root).
type FolderMoved struct {
	FolderID uuid.UUID  `json:"folder_id"`
	ParentID *uuid.UUID `json:"parent_id,omitempty"`
	MovedAt  time.Time  `json:"moved_at"`
}

// FolderDeleted records the deletion of the folder and of everything in it, folders and files, at any
// depth: they are gone with it, and their content is deleted afterwards.
type FolderDeleted struct {
	FolderID  uuid.UUID `json:"folder_id"`
	DeletedAt time.Time `json:"deleted_at"`
}

func (FolderCreated) EventName() string { return EventFolderCreated }
func (FolderRenamed) EventName() string { return EventFolderRenamed }
func (FolderMoved) EventName() string   { return EventFolderMoved }
func (FolderDeleted) EventName() string { return EventFolderDeleted }

// Folder is a folder as its events leave it.
type Folder struct {
	ID        uuid.UUID
	SpaceID   uuid.UUID
	ParentID  *uuid.UUID
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
	Deleted   bool
	Version   int64
}

// Exists reports whether the folder was created and not deleted (by itself; an ancestor's deletion
// is for the caller to check).
func (f Folder) Exists() bool { return f.Version > 0 && !f.Deleted }

// CreateFolder asks for a new folder. ParentOK says the parent (if any) is a live folder of the
// space.
type CreateFolder struct {
	FolderID uuid.UUID
	SpaceID  uuid.UUID
	ParentID *uuid.UUID
	ParentOK bool
	Viewer   Viewer
	Name     string
}

// UpdateFolder asks to rename or move a folder. For a move, ParentOK says the new parent is a live
// folder of the same space, Cycle that it is the folder itself or inside it.
type UpdateFolder struct {
	Viewer          Viewer
	ExpectedVersion int64
	Name            *string
	ParentID        **uuid.UUID
	ParentOK        bool
	Cycle           bool
}

// DeleteFolder asks to delete a folder and its content.
type DeleteFolder struct {
	Viewer          Viewer
	ExpectedVersion int64
}

func (f Folder) authorize(v Viewer, expected int64) error {
	if !f.Exists() || !v.SpaceLive || !v.ReadSpace {
		return domain.Errorf(domain.CodeNotFound, "folder not found")
	}
	if !v.WriteSpace {
		return domain.Errorf(domain.CodeForbidden, "only the space's editors and managers change its folders")
	}
	if expected > 0 && expected != f.Version {
		return domain.Errorf(domain.CodeVersionConflict, "folder is at version %d, not %d", f.Version, expected)
	}
	return nil
}

// DecideFolder returns the events a folder command causes, or a *domain.Error as Decide does, and
// CodeInvalid for a move that would make a cycle.
func DecideFolder(f Folder, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case CreateFolder:
		if f.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "folder %s already exists", c.FolderID)
		}
		switch {
		case !c.Viewer.ReadSpace:
			return nil, domain.Errorf(domain.CodeNotFound, "space not found")
		case !c.Viewer.WriteSpace:
			return nil, domain.Errorf(domain.CodeForbidden, "only the space's editors and managers create folders")
		case c.ParentID != nil && !c.ParentOK:
			return nil, domain.Errorf(domain.CodeNotFound, "parent folder not found")
		}
		v := domain.Validation{}
		if msg := ValidName(c.Name); msg != "" {
			v.Add("name", msg)
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		return []domain.Event{FolderCreated{FolderID: c.FolderID, SpaceID: c.SpaceID, SubjectID: c.Viewer.SpaceOwner, ParentID: c.ParentID, Name: c.Name, CreatedAt: now}}, nil
	case UpdateFolder:
		if err := f.authorize(c.Viewer, c.ExpectedVersion); err != nil {
			return nil, err
		}
		v := domain.Validation{}
		if c.Name != nil {
			if msg := ValidName(*c.Name); msg != "" {
				v.Add("name", msg)
			}
		}
		move := c.ParentID != nil && !sameFolder(*c.ParentID, f.ParentID)
		if move {
			switch {
			case c.Cycle:
				v.Add("parent_id", "a folder cannot move into itself or one of its subfolders")
			case *c.ParentID != nil && !c.ParentOK:
				return nil, domain.Errorf(domain.CodeNotFound, "parent folder not found")
			}
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		var evs []domain.Event
		if c.Name != nil && *c.Name != f.Name {
			evs = append(evs, FolderRenamed{FolderID: f.ID, SubjectID: c.Viewer.SpaceOwner, Name: *c.Name, RenamedAt: now})
		}
		if move {
			evs = append(evs, FolderMoved{FolderID: f.ID, ParentID: *c.ParentID, MovedAt: now})
		}
		return evs, nil
	case DeleteFolder:
		if err := f.authorize(c.Viewer, c.ExpectedVersion); err != nil {
			return nil, err
		}
		return []domain.Event{FolderDeleted{FolderID: f.ID, DeletedAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "folder: unknown command %T", cmd)
	}
}

// EvolveFolder applies one event to a folder.
func EvolveFolder(f Folder, e domain.Event) Folder {
	f.Version++
	switch e := e.(type) {
	case FolderCreated:
		f.ID, f.SpaceID, f.ParentID, f.Name = e.FolderID, e.SpaceID, e.ParentID, e.Name
		f.CreatedAt, f.UpdatedAt = e.CreatedAt, e.CreatedAt
	case FolderRenamed:
		f.Name, f.UpdatedAt = e.Name, e.RenamedAt
	case FolderMoved:
		f.ParentID, f.UpdatedAt = e.ParentID, e.MovedAt
	case FolderDeleted:
		f.Deleted, f.UpdatedAt = true, e.DeletedAt
	}
	return f
}
