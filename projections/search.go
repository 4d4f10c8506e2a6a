package projections

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// SearchProjector names the search projector.
const SearchProjector = "search"

// Search turns note, file, folder, chat and space events into index work items (search_work), in the same
// transaction as its checkpoint, and marks each touched document pending (search_docs). It never
// calls Weaviate: the SearchIndexer drains the items. One item per document: a later event moves its
// position on, so the indexer always writes the document as it is at that point or later.
// Rebuilding this projector re-indexes everything (`atlas search reindex`).
func Search() *Projector {
	docEvent := func(kind string, doc func(eventstore.Record) uuid.UUID, space func(eventstore.Record) *uuid.UUID) Handler {
		return func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			id := doc(r)
			if err := enqueueSearch(ctx, tx, r, id, kind); err != nil {
				return err
			}
			var sp *uuid.UUID
			if space != nil {
				sp = space(r)
			}
			_, err := tx.Exec(ctx, `INSERT INTO search_docs (doc_id, kind, space_id, tenant_id, state, updated_at)
				VALUES ($1, $2, $3, $4, 'pending', $5)
				ON CONFLICT (doc_id) DO UPDATE SET state = 'pending', reason = NULL, updated_at = excluded.updated_at,
					space_id = coalesce(excluded.space_id, search_docs.space_id)`,
				id, kind, sp, tenantOf(r), r.RecordedAt)
			return err
		}
	}
	stream := func(r eventstore.Record) uuid.UUID { return r.StreamID }
	container := func(kind string) Handler {
		return func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			return enqueueSearch(ctx, tx, r, r.StreamID, kind)
		}
	}
	noteSpace := func(r eventstore.Record) *uuid.UUID { id := r.Event.(note.Created).SpaceID; return &id }
	fileSpace := func(r eventstore.Record) *uuid.UUID { id := r.Event.(file.Uploaded).SpaceID; return &id }
	chatSpace := func(r eventstore.Record) *uuid.UUID { id := r.Event.(chat.Created).SpaceID; return &id }
	return &Projector{
		Name: SearchProjector, Version: 1, Tables: []string{"search_work", "search_docs"},
		// Its tables are the indexer's work queue: a rebuild must fill them where the indexer looks.
		// The index itself is rebuilt beside the old one (SearchCollections).
		InPlaceRebuild: true,
		Handlers: map[string]Handler{
			note.EventCreated:           docEvent("note", stream, noteSpace),
			note.EventEdited:            docEvent("note", stream, nil),
			note.EventDeleted:           docEvent("note", stream, nil),
			file.EventUploaded:          docEvent("file", stream, fileSpace),
			file.EventVersionAdded:      docEvent("file", stream, nil),
			file.EventRenamed:           docEvent("file", stream, nil),
			file.EventMoved:             docEvent("file", stream, nil),
			file.EventDeleted:           docEvent("file", stream, nil),
			file.EventVisibilityChanged: docEvent("file", stream, nil),
			file.EventFolderDeleted:     container("folder"),
			file.EventFolderMoved:       container("folder"),
			space.EventDeleted:          container("space"),
			// A chat is one document: its title and the text of its user messages and completed
			// replies. Chunks of a reply being written are not indexed; its completion is.
			chat.EventCreated:        docEvent("chat", stream, chatSpace),
			chat.EventRenamed:        docEvent("chat", stream, nil),
			chat.EventMessagePosted:  docEvent("chat", stream, nil),
			chat.EventReplyCompleted: docEvent("chat", stream, nil),
			chat.EventDeleted:        docEvent("chat", stream, nil),
		},
	}
}

func enqueueSearch(ctx context.Context, tx pgx.Tx, r eventstore.Record, doc uuid.UUID, kind string) error {
	_, err := tx.Exec(ctx, `INSERT INTO search_work (doc_id, kind, tenant_id, position, transaction_id, enqueued_at, next_attempt_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6)
		ON CONFLICT (doc_id) DO UPDATE SET kind = excluded.kind, position = excluded.position,
			transaction_id = excluded.transaction_id, next_attempt_at = excluded.next_attempt_at, attempts = 0, last_error = NULL`,
		doc, kind, tenantOf(r), r.Position.GlobalPosition, int64(r.Position.TransactionID), r.RecordedAt)
	return err
}
