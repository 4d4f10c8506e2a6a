package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

type noteDTO struct {
	ID        uuid.UUID  `json:"id"`
	SpaceID   uuid.UUID  `json:"space_id"`
	Title     string     `json:"title"`
	Body      *string    `json:"body,omitempty"`
	Version   int64      `json:"version"`
	CreatedBy *uuid.UUID `json:"created_by,omitempty"`
	UpdatedBy *uuid.UUID `json:"updated_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Position  string     `json:"position,omitempty"`
	// IndexState is where the note stands in the search index (reads only).
	IndexState *projections.IndexState `json:"index_state,omitempty"`
}

func noteFromView(v projections.NoteView) noteDTO {
	return noteDTO{ID: v.ID, SpaceID: v.SpaceID, Title: v.Title, Body: v.Body, Version: v.Version, CreatedBy: v.CreatedBy,
		UpdatedBy: v.UpdatedBy, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, IndexState: v.IndexState}
}

func noteFromState(st note.State) noteDTO {
	body := st.Body
	return noteDTO{ID: st.ID, SpaceID: st.SpaceID, Title: st.Title, Body: &body, Version: st.Version,
		CreatedAt: st.CreatedAt.UTC(), UpdatedAt: st.UpdatedAt.UTC()}
}

func (s *Server) noteCommandResponse(c echo.Context, status int, r commands.NoteResult) error {
	dto := noteFromState(r.Note)
	dto.Position = withPosition(c, r.Position)
	setETag(c, r.Note.Version)
	return c.JSON(status, dto)
}

func (s *Server) createNote(c echo.Context) error {
	spaceID, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	var in struct {
		Title *string `json:"title"`
		Body  *string `json:"body"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	v := domain.Validation{}
	if in.Title == nil {
		v.Add("title", "is required")
	}
	if in.Body == nil {
		v.Add("body", "is required (it may be empty)")
	}
	if err := v.Err(); err != nil {
		return err
	}
	r, err := s.deps.Commands.CreateNote(c.Request().Context(), cc, spaceID, *in.Title, *in.Body)
	if err != nil {
		return err
	}
	return s.noteCommandResponse(c, http.StatusCreated, r)
}

func (s *Server) updateNote(c echo.Context) error {
	id, err := pathUUID(c, "note_id")
	if err != nil {
		return err
	}
	var in struct {
		Title *string `json:"title"`
		Body  *string `json:"body"`
	}
	cc, expected, err := readCommand(c, &in, true)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.EditNote(c.Request().Context(), cc, id, expected, in.Title, in.Body)
	if err != nil {
		return err
	}
	return s.noteCommandResponse(c, http.StatusOK, r)
}

func (s *Server) deleteNote(c echo.Context) error {
	return s.pathCommand(c, true, []string{"note_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, expected int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.DeleteNote(ctx, cc, ids[0], expected)
		return r.Position, err
	})
}

func (s *Server) getNote(c echo.Context) error {
	if asOf := c.QueryParam("as_of"); asOf != "" {
		id, err := pathUUID(c, "note_id")
		if err != nil {
			return err
		}
		return stateAsOf(s, c, id, asOf, "note", func(ctx context.Context) error {
			_, _, err := s.deps.Commands.NoteFor(ctx, userID(c), id)
			return err
		}, note.Evolve, note.State.Exists, func(st note.State) int64 { return st.Version }, noteFromState)
	}
	return getOne(s, c, "note_id", []string{projections.NotesProjector, projections.PermissionsProjector}, s.deps.Queries.Note,
		func(v projections.NoteView) int64 { return v.Version }, noteFromView)
}

func (s *Server) listNotes(c echo.Context) error {
	return listUnder(s, c, "space_id", []string{projections.NotesProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.NoteView, *string, error) {
			page, err := s.deps.Queries.NotesOf(ctx, viewer, id, cursor, limit)
			return page.Items, page.NextCursor, err
		}, noteFromView)
}

func (s *Server) listNoteRevisions(c echo.Context) error {
	return listUnder(s, c, "note_id", []string{projections.NotesProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.NoteRevisionView, *string, error) {
			page, err := s.deps.Queries.NoteRevisions(ctx, viewer, id, cursor, limit)
			return page.Items, page.NextCursor, err
		}, same[projections.NoteRevisionView])
}

// noteHistory lists the events of a note's stream for whoever may read the note now.
func (s *Server) noteHistory(c echo.Context) error {
	return s.streamHistory(c, "note_id", func(ctx context.Context, id uuid.UUID) error {
		_, _, err := s.deps.Commands.NoteFor(ctx, userID(c), id)
		return err
	})
}
