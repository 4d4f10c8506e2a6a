package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// TestNotesOfADeletedSpaceStayGone appends, in log order: a note, its space's deletion, then a note
// created in the deleted space (as a command racing the deletion could). Neither note is projected
// once the deletion is: the first is removed with its revisions, the second never appears.
func TestNotesOfADeletedSpaceStayGone(t *testing.T) {
	e := newEnv(t)
	reg := e.store.Registry()
	eventstore.Register[space.Created](reg)
	eventstore.Register[space.Deleted](reg)
	eventstore.Register[note.Created](reg)
	eventstore.Register[note.Edited](reg)
	ctx := context.Background()
	now := time.Now().UTC()
	owner, spaceID := uuid.New(), uuid.New()
	appendOne := func(typ string, stream uuid.UUID, version int64, ev domain.Event) eventstore.Position {
		t.Helper()
		res, err := e.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			StreamType: typ, StreamID: stream, TenantID: &owner, ExpectedVersion: version, Events: []domain.Event{ev}}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Position
	}
	appendOne(space.StreamType, spaceID, 0, space.Created{SpaceID: spaceID, OwnerUserID: &owner, Name: "S", Slug: "s", Visibility: "private", CreatedAt: now})
	early, late := uuid.New(), uuid.New()
	appendOne(note.StreamType, early, 0, note.Created{NoteID: early, SpaceID: spaceID, Title: "early", Body: "b", CreatedAt: now})
	appendOne(note.StreamType, early, 1, note.Edited{NoteID: early, Title: "early", Body: "b2", EditedAt: now})
	appendOne(space.StreamType, spaceID, 1, space.Deleted{SpaceID: spaceID, Slug: "s", DeletedAt: now})
	appendOne(note.StreamType, late, 0, note.Created{NoteID: late, SpaceID: spaceID, Title: "late", Body: "b", CreatedAt: now})
	last := appendOne(note.StreamType, late, 1, note.Edited{NoteID: late, Title: "late", Body: "b2", EditedAt: now})

	rt, _ := start(t, e, projections.Options{}, projections.Notes())
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rt.WaitFor(wctx, last, projections.NotesProjector); err != nil {
		t.Fatal(err)
	}
	var notes, revisions, tombstones int
	if err := e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM notes), (SELECT count(*) FROM note_revisions),
		(SELECT count(*) FROM note_space_tombstones)`).Scan(&notes, &revisions, &tombstones); err != nil {
		t.Fatal(err)
	}
	if notes != 0 || revisions != 0 || tombstones != 1 {
		t.Fatalf("notes %d, revisions %d, tombstones %d; want 0, 0, 1", notes, revisions, tombstones)
	}
}
