package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// NotesProjector names the notes projector.
const NotesProjector = "notes"

// Notes projects note events into notes and note_revisions. It also follows space deletions: a
// deleted space's notes and revisions go, and a note created in it later in the log is never
// projected (note_space_tombstones), so nothing of a deleted space stays readable.
func Notes() *Projector {
	return &Projector{
		Name: NotesProjector, Version: 1, Tables: []string{"notes", "note_revisions", "note_space_tombstones"},
		// Runs of note.created events in a bulk catch-up (a rebuild), in one go.
		BulkTypes: map[string]bool{note.EventCreated: true},
		Bulk:      bulkNotesCreated,
		// notes_space_idx: a rebuild builds it after its bulk catch-up (COPY then does not keep it
		// up row by row), unless a space's deletion, which finds the space's notes with it, comes first.
		LateIndexes:  true,
		IndexedTypes: map[string]bool{space.EventDeleted: true},
		Handlers: map[string]Handler{
			note.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(note.Created)
				tag, err := tx.Exec(ctx, `INSERT INTO notes (id, space_id, tenant_id, title, body, version, created_by, updated_by, created_at, updated_at)
					SELECT $1, $2, $3, $4, $5, $6, $7, $7, $8, $8
					WHERE NOT EXISTS (SELECT 1 FROM note_space_tombstones WHERE space_id = $2)`,
					e.NoteID, e.SpaceID, noteTenant(r), e.Title, e.Body, r.StreamVersion, r.Metadata.ActorID, e.CreatedAt)
				if err != nil || tag.RowsAffected() == 0 {
					return err
				}
				_, err = tx.Exec(ctx, `INSERT INTO note_revisions (note_id, revision, space_id, tenant_id, title, body, edited_by, edited_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
					e.NoteID, r.StreamVersion, e.SpaceID, noteTenant(r), e.Title, e.Body, r.Metadata.ActorID, e.CreatedAt)
				return err
			},
			note.EventEdited: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(note.Edited)
				if _, err := tx.Exec(ctx, `UPDATE notes SET title = $2, body = $3, version = $4, updated_by = $5, updated_at = $6 WHERE id = $1`,
					e.NoteID, e.Title, e.Body, r.StreamVersion, r.Metadata.ActorID, e.EditedAt); err != nil {
					return err
				}
				// Only for a note that is still projected (its space not deleted).
				_, err := tx.Exec(ctx, `INSERT INTO note_revisions (note_id, revision, space_id, tenant_id, title, body, edited_by, edited_at)
					SELECT id, $2, space_id, tenant_id, $3, $4, $5, $6 FROM notes WHERE id = $1`,
					e.NoteID, r.StreamVersion, e.Title, e.Body, r.Metadata.ActorID, e.EditedAt)
				return err
			},
			note.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				if _, err := tx.Exec(ctx, `DELETE FROM note_revisions WHERE note_id = $1`, r.StreamID); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM notes WHERE id = $1`, r.StreamID)
				return err
			},
			space.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				if _, err := tx.Exec(ctx, `INSERT INTO note_space_tombstones (space_id) VALUES ($1) ON CONFLICT DO NOTHING`, r.StreamID); err != nil {
					return err
				}
				// Through the space's notes (notes_space_idx, then the revisions' key): every revision
				// is of a note in notes, and note_revisions has no index on space_id.
				if _, err := tx.Exec(ctx, `DELETE FROM note_revisions WHERE note_id IN (SELECT id FROM notes WHERE space_id = $1)`, r.StreamID); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM notes WHERE space_id = $1`, r.StreamID)
				return err
			},
		},
	}
}

// noteTenant is the tenant a note's rows carry: its event's (its space's owner).
func noteTenant(r eventstore.Record) uuid.UUID {
	if r.TenantID != nil {
		return *r.TenantID
	}
	return uuid.Nil
}

// bulkNotesCreated applies a run of note.created events as their handler does one by one: a note
// and its first revision each, except in a space deleted earlier in the log (note_space_tombstones).
// Into a rebuild's copies (canCopy) it writes with COPY, having left out the deleted spaces' notes
// itself; into tables under row-level security, where COPY is refused, with one INSERT over arrays.
func bulkNotesCreated(ctx context.Context, tx pgx.Tx, recs []eventstore.Record, canCopy bool) error {
	// pgtype.UUID, not uuid.UUID: pgx encodes the latter through its text form (driver.Valuer).
	type row struct {
		id, space, tenant, actor pgtype.UUID
		title, body              string
		version                  int64
		at                       time.Time
	}
	rows := make([]row, len(recs))
	for i, r := range recs {
		e := r.Event.(note.Created)
		rows[i] = row{id: pgUUID(e.NoteID), space: pgUUID(e.SpaceID), tenant: pgUUID(noteTenant(r)),
			title: e.Title, body: e.Body, version: r.StreamVersion, at: e.CreatedAt}
		if r.Metadata.ActorID != nil {
			rows[i].actor = pgUUID(*r.Metadata.ActorID)
		}
	}
	if canCopy {
		seen := map[[16]byte]bool{}
		var spaces []pgtype.UUID
		for _, r := range rows {
			if !seen[r.space.Bytes] {
				seen[r.space.Bytes] = true
				spaces = append(spaces, r.space)
			}
		}
		q, err := tx.Query(ctx, `SELECT space_id FROM note_space_tombstones WHERE space_id = ANY($1)`, spaces)
		if err != nil {
			return fmt.Errorf("deleted spaces: %w", err)
		}
		deleted, err := pgx.CollectRows(q, pgx.RowTo[pgtype.UUID])
		if err != nil {
			return fmt.Errorf("deleted spaces: %w", err)
		}
		if len(deleted) > 0 {
			gone := map[[16]byte]bool{}
			for _, d := range deleted {
				gone[d.Bytes] = true
			}
			kept := rows[:0]
			for _, r := range rows {
				if !gone[r.space.Bytes] {
					kept = append(kept, r)
				}
			}
			rows = kept
		}
		text := 0
		for _, r := range rows {
			text += len(r.title) + len(r.body)
		}
		// Each row's fixed part (field count, lengths, UUIDs, numbers, times) is under 200 bytes.
		notes, revisions := newCopyRows(10, 200*len(rows)+text), newCopyRows(8, 160*len(rows)+text)
		for _, r := range rows {
			notes.row()
			notes.uuid(r.id)
			notes.uuid(r.space)
			notes.uuid(r.tenant)
			notes.text(r.title)
			notes.text(r.body)
			notes.int8(r.version)
			notes.uuid(r.actor)
			notes.uuid(r.actor)
			notes.timestamptz(r.at)
			notes.timestamptz(r.at)
			revisions.row()
			revisions.uuid(r.id)
			revisions.int8(r.version)
			revisions.uuid(r.space)
			revisions.uuid(r.tenant)
			revisions.text(r.title)
			revisions.text(r.body)
			revisions.uuid(r.actor)
			revisions.timestamptz(r.at)
		}
		if err := notes.copyInto(ctx, tx, "notes",
			[]string{"id", "space_id", "tenant_id", "title", "body", "version", "created_by", "updated_by", "created_at", "updated_at"}); err != nil {
			return err
		}
		return revisions.copyInto(ctx, tx, "note_revisions",
			[]string{"note_id", "revision", "space_id", "tenant_id", "title", "body", "edited_by", "edited_at"})
	}
	n := len(rows)
	ids, spaces, tenants, actors := make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]pgtype.UUID, n)
	titles, bodies := make([]string, n), make([]string, n)
	versions, created := make([]int64, n), make([]time.Time, n)
	for i, r := range rows {
		ids[i], spaces[i], tenants[i], actors[i] = r.id, r.space, r.tenant, r.actor
		titles[i], bodies[i], versions[i], created[i] = r.title, r.body, r.version, r.at
	}
	// One statement: the arrays cross the wire once and both tables are written from them.
	if _, err := tx.Exec(ctx, `WITH u AS MATERIALIZED (
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::uuid[], $8::timestamptz[])
				AS u(id, space_id, tenant_id, title, body, version, actor, at)
			WHERE NOT EXISTS (SELECT 1 FROM note_space_tombstones t WHERE t.space_id = u.space_id)),
		n AS (INSERT INTO notes (id, space_id, tenant_id, title, body, version, created_by, updated_by, created_at, updated_at)
			SELECT id, space_id, tenant_id, title, body, version, actor, actor, at, at FROM u)
		INSERT INTO note_revisions (note_id, revision, space_id, tenant_id, title, body, edited_by, edited_at)
		SELECT id, version, space_id, tenant_id, title, body, actor, at FROM u`,
		ids, spaces, tenants, titles, bodies, versions, actors, created); err != nil {
		return fmt.Errorf("insert notes and revisions: %w", err)
	}
	return nil
}

// NoteView is a note as the notes read model holds it. Body is empty in listings.
type NoteView struct {
	ID        uuid.UUID  `json:"id"`
	SpaceID   uuid.UUID  `json:"space_id"`
	Title     string     `json:"title"`
	Body      *string    `json:"body,omitempty"`
	Version   int64      `json:"version"`
	CreatedBy *uuid.UUID `json:"created_by"`
	UpdatedBy *uuid.UUID `json:"updated_by"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// IndexState is the search index's state of the note (single reads only).
	IndexState *IndexState `json:"index_state,omitempty"`
}

// IndexState is where a document stands in the search index: "pending" (a change waits for the
// indexer), "indexed", or "failed" with the reason.
type IndexState struct {
	State  string  `json:"state"`
	Reason *string `json:"reason,omitempty"`
}

// NoteRevisionView is one revision of a note.
type NoteRevisionView struct {
	Revision int64      `json:"revision"`
	Title    string     `json:"title"`
	Body     string     `json:"body"`
	EditedBy *uuid.UUID `json:"edited_by"`
	EditedAt time.Time  `json:"edited_at"`
}

// readableSpace is the condition that viewer ($2) may read the space whose id is the SQL expression
// spaceCol, in their own name or as anyone signed in ($3).
func readableSpace(spaceCol string) string {
	return `EXISTS (SELECT 1 FROM permissions p WHERE p.principal_id IN ($2, $3) AND p.permission = 'read' AND p.resource_id = ` + spaceCol + `)`
}

func scanNote(row pgx.Row, withBody bool, extra ...any) (NoteView, error) {
	var v NoteView
	dest := []any{&v.ID, &v.SpaceID, &v.Title, &v.Version, &v.CreatedBy, &v.UpdatedBy, &v.CreatedAt, &v.UpdatedAt}
	if withBody {
		dest = append(dest, &v.Body)
	}
	dest = append(dest, extra...)
	err := row.Scan(dest...)
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v, err
}

const noteColumns = `n.id, n.space_id, n.title, n.version, n.created_by, n.updated_by, n.created_at, n.updated_at`

// Note returns a note viewer may read (through its space); CodeNotFound otherwise.
func (q *Queries) Note(ctx context.Context, viewer, id uuid.UUID) (NoteView, error) {
	var v NoteView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) (err error) {
		var state, reason *string
		v, err = scanNote(rows, true, &state, &reason)
		if state != nil {
			v.IndexState = &IndexState{State: *state, Reason: reason}
		}
		found = true
		return err
	}, `SELECT `+noteColumns+`, n.body, sd.state, sd.reason FROM notes n LEFT JOIN search_docs sd ON sd.doc_id = n.id
		WHERE n.id = $1 AND `+readableSpace("n.space_id"), id, viewer, Anyone)
	if err == nil && !found {
		return v, domain.Errorf(domain.CodeNotFound, "note not found")
	}
	return v, err
}

// NotePage is one page of a note listing.
type NotePage struct {
	Items      []NoteView
	NextCursor *string
}

// NotesOf lists a space's notes (without bodies), oldest first, for a viewer who may read the space;
// CodeNotFound otherwise. A malformed cursor is CodeBadRequest.
func (q *Queries) NotesOf(ctx context.Context, viewer, spaceID uuid.UUID, cursor string, limit int) (NotePage, error) {
	items, next, err := inSpace(ctx, q, viewer, spaceID, cursor, limit, "notes",
		`SELECT `+noteColumns+` FROM notes n WHERE n.space_id = $1 AND n.id > $2 ORDER BY n.id LIMIT $3`,
		func(r pgx.Row) (NoteView, error) { return scanNote(r, false) }, func(v NoteView) uuid.UUID { return v.ID })
	return NotePage{Items: items, NextCursor: next}, err
}

// NoteRevisionPage is one page of a note's revisions.
type NoteRevisionPage struct {
	Items      []NoteRevisionView
	NextCursor *string
}

// NoteRevisions lists a note's revisions, oldest first, after revision number cursor ("" for the
// first page), for a viewer who may read the note; CodeNotFound otherwise.
func (q *Queries) NoteRevisions(ctx context.Context, viewer, noteID uuid.UUID, cursor string, limit int) (NoteRevisionPage, error) {
	items, next, err := numberedChildren(ctx, q, viewer, noteID, cursor, limit, "note",
		`SELECT EXISTS (SELECT 1 FROM notes n WHERE n.id = $1 AND `+readableSpace("n.space_id")+`)`,
		`SELECT revision, title, body, edited_by, edited_at FROM note_revisions
			WHERE note_id = $1 AND revision > $2 ORDER BY revision LIMIT $3`,
		func(rows pgx.Row) (NoteRevisionView, error) {
			var v NoteRevisionView
			err := rows.Scan(&v.Revision, &v.Title, &v.Body, &v.EditedBy, &v.EditedAt)
			v.EditedAt = v.EditedAt.UTC()
			return v, err
		},
		func(v NoteRevisionView) int64 { return v.Revision })
	return NoteRevisionPage{Items: items, NextCursor: next}, err
}

// pgUUID is id as pgx encodes it in binary.
func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }
