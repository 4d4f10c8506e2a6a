package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// NoteResult is a note after a command, with the position of the command's last event.
type NoteResult struct {
	Note     note.State
	Position eventstore.Position
}

// Note loads a note aggregate (up to maxVersion; 0 for its latest state).
func (h *Handlers) Note(ctx context.Context, id uuid.UUID, maxVersion int64) (note.State, error) {
	st, _, err := load(ctx, h.store, id, maxVersion, note.Evolve)
	return st, err
}

// SpaceAccess loads a space and says what actor may do with its content.
func (h *Handlers) SpaceAccess(ctx context.Context, actor, spaceID uuid.UUID) (space.State, note.Access, error) {
	st, orgRole, err := h.SpaceFor(ctx, actor, spaceID)
	if err != nil {
		return st, note.Access{}, err
	}
	return st, note.Access{Read: st.CanRead(actor, orgRole), Write: st.CanWrite(actor, orgRole)}, nil
}

// NoteFor loads a note and what viewer may do with it (through its space), for reads that go to the
// log (history, as_of). A note viewer may not read is CodeNotFound.
func (h *Handlers) NoteFor(ctx context.Context, viewer, id uuid.UUID) (note.State, note.Access, error) {
	st, err := h.Note(ctx, id, 0)
	if err != nil {
		return st, note.Access{}, err
	}
	if st.Version == 0 {
		return st, note.Access{}, domain.Errorf(domain.CodeNotFound, "note not found")
	}
	_, access, err := h.SpaceAccess(ctx, viewer, st.SpaceID)
	if err == nil && !access.Read {
		err = domain.Errorf(domain.CodeNotFound, "note not found")
	}
	return st, access, err
}

// CreateNote creates a note in a space (its managers and editors). Errors: CodeInvalid, CodeNotFound
// (no such space for the actor), CodeForbidden (a viewer).
func (h *Handlers) CreateNote(ctx context.Context, cc Context, spaceID uuid.UUID, title, body string) (NoteResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.noteReplay(ctx, prev, err)
	}
	sp, access, err := h.SpaceAccess(ctx, cc.Actor, spaceID)
	if err != nil {
		return NoteResult{}, err
	}
	id := uuid.Must(uuid.NewV7())
	evs, err := note.Decide(note.State{}, note.Create{NoteID: id, SpaceID: spaceID, Subject: sp.OwnerUserID, Access: access, Title: title, Body: body}, h.now())
	if err != nil {
		return NoteResult{}, err
	}
	tenant := sp.Owner()
	res, prev, err := h.appendIdempotent(ctx, nil, cc, id, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: note.StreamType, StreamID: id, TenantID: &tenant, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	})
	return h.noteOutcome(ctx, note.State{}, evs, res, prev, err)
}

// EditNote changes a note's title or body; each edit is a revision. Errors: CodeInvalid,
// CodeNotFound, CodeForbidden, CodeVersionConflict.
func (h *Handlers) EditNote(ctx context.Context, cc Context, id uuid.UUID, expected int64, title, body *string) (NoteResult, error) {
	return h.changeNote(ctx, cc, id, expected, func(a note.Access, subject *uuid.UUID) any {
		return note.Edit{Subject: subject, Access: a, ExpectedVersion: expected, Title: title, Body: body}
	})
}

// DeleteNote deletes a note. Errors: CodeNotFound, CodeForbidden, CodeVersionConflict.
func (h *Handlers) DeleteNote(ctx context.Context, cc Context, id uuid.UUID, expected int64) (NoteResult, error) {
	return h.changeNote(ctx, cc, id, expected, func(a note.Access, _ *uuid.UUID) any {
		return note.Delete{Access: a, ExpectedVersion: expected}
	})
}

// changeNote loads, decides and appends; without an expected version it retries a lost race a few
// times, as changeSpace does.
func (h *Handlers) changeNote(ctx context.Context, cc Context, id uuid.UUID, expected int64, command func(note.Access, *uuid.UUID) any) (NoteResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.noteReplay(ctx, prev, err)
	}
	for attempt := 1; ; attempt++ {
		res, err := h.changeNoteOnce(ctx, cc, id, command)
		if expected == 0 && attempt < 3 && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, err
	}
}

func (h *Handlers) changeNoteOnce(ctx context.Context, cc Context, id uuid.UUID, command func(note.Access, *uuid.UUID) any) (NoteResult, error) {
	st, last, err := load(ctx, h.store, id, 0, note.Evolve)
	if err != nil {
		return NoteResult{}, err
	}
	var access note.Access
	var tenant uuid.UUID
	var subject *uuid.UUID
	if st.Version > 0 {
		var sp space.State
		if sp, access, err = h.SpaceAccess(ctx, cc.Actor, st.SpaceID); err != nil {
			return NoteResult{}, err
		}
		tenant, subject = sp.Owner(), sp.OwnerUserID
	}
	evs, err := note.Decide(st, command(access, subject), h.now())
	if err != nil {
		return NoteResult{}, err
	}
	if len(evs) == 0 {
		return NoteResult{Note: st, Position: last}, nil
	}
	res, prev, err := h.appendIdempotent(ctx, nil, cc, id, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: note.StreamType, StreamID: id, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	})
	return h.noteOutcome(ctx, st, evs, res, prev, err)
}

func (h *Handlers) noteOutcome(ctx context.Context, st note.State, evs []domain.Event, res eventstore.AppendResult, prev *eventstore.IdempotentResult, err error) (NoteResult, error) {
	if prev != nil {
		return h.noteReplay(ctx, *prev, nil)
	}
	if err != nil {
		return NoteResult{}, err
	}
	for _, e := range evs {
		st = note.Evolve(st, e)
	}
	return NoteResult{Note: st, Position: res.Position}, nil
}

// noteReplay rebuilds the result of an earlier idempotent command from the note's stream as it was
// right after that command.
func (h *Handlers) noteReplay(ctx context.Context, prev eventstore.IdempotentResult, err error) (NoteResult, error) {
	if err != nil {
		return NoteResult{}, err
	}
	st, err := h.Note(ctx, prev.StreamID, prev.StreamVersion)
	if err != nil {
		return NoteResult{}, fmt.Errorf("replay idempotent result: %w", err)
	}
	return NoteResult{Note: st, Position: prev.Position}, nil
}
