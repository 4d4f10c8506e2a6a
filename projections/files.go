package projections

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// FilesProjector names the files projector.
const FilesProjector = "files"

// Files projects folder and file events into folders, files and file_versions, and turns every
// deletion (of a file, a folder with everything below it, a space) into work items for the blob
// reaper (blob_deletions), in the same transaction as its checkpoint. What arrives later in the log
// inside a deleted space or folder (a command that raced the deletion) is deleted on arrival:
// file_tombstones remembers deleted spaces and folders.
func Files() *Projector {
	return &Projector{
		Name: FilesProjector, Version: 1,
		// blob_refs is not emptied by a rebuild: the orphan sweep deletes whatever is not in it, so it
		// must never be empty while content exists. Replayed uploads find their rows already there,
		// and the reaper removes the rows of content it deleted.
		Tables: []string{"folders", "files", "file_versions", "file_tombstones", "blob_deletions"},
		Handlers: map[string]Handler{
			file.EventFolderCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.FolderCreated)
				dead, err := tombstoned(ctx, tx, e.SpaceID, e.ParentID)
				if err != nil || dead {
					if err == nil {
						err = bury(ctx, tx, e.FolderID)
					}
					return err
				}
				_, err = tx.Exec(ctx, `INSERT INTO folders (id, space_id, tenant_id, parent_id, name, version, created_by, created_at, updated_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
					e.FolderID, e.SpaceID, tenantOf(r), e.ParentID, e.Name, r.StreamVersion, r.Metadata.ActorID, e.CreatedAt)
				return err
			},
			file.EventFolderRenamed: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.FolderRenamed)
				_, err := tx.Exec(ctx, `UPDATE folders SET name = $2, version = $3, updated_at = $4 WHERE id = $1`, e.FolderID, e.Name, r.StreamVersion, e.RenamedAt)
				return err
			},
			file.EventFolderMoved: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.FolderMoved)
				var spaceID uuid.UUID
				err := tx.QueryRow(ctx, `SELECT space_id FROM folders WHERE id = $1`, e.FolderID).Scan(&spaceID)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil // gone already
				}
				if err != nil {
					return err
				}
				dead, err := tombstoned(ctx, tx, spaceID, e.ParentID)
				if err != nil {
					return err
				}
				if dead {
					return deleteFolderTree(ctx, tx, e.FolderID, r.RecordedAt)
				}
				_, err = tx.Exec(ctx, `UPDATE folders SET parent_id = $2, version = $3, updated_at = $4 WHERE id = $1`, e.FolderID, e.ParentID, r.StreamVersion, e.MovedAt)
				return err
			},
			file.EventFolderDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				return deleteFolderTree(ctx, tx, r.StreamID, r.RecordedAt)
			},
			file.EventUploaded: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.Uploaded)
				c := e.Content
				if _, err := tx.Exec(ctx, `INSERT INTO blob_refs (blob_key, file_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, c.BlobKey, e.FileID); err != nil {
					return err
				}
				dead, err := tombstoned(ctx, tx, e.SpaceID, e.FolderID)
				if err != nil || dead {
					if err == nil {
						err = enqueueBlobs(ctx, tx, r.RecordedAt, c.BlobKey)
					}
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO files (id, space_id, tenant_id, folder_id, name, visibility, uploaded_by, current_version,
					size, sha256, content_type, blob_key, version, created_at, updated_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)`,
					e.FileID, e.SpaceID, tenantOf(r), e.FolderID, e.Name, e.Visibility, c.UploadedBy, c.Version,
					c.Size, c.SHA256, c.ContentType, c.BlobKey, r.StreamVersion, c.UploadedAt); err != nil {
					return err
				}
				return insertVersion(ctx, tx, e.FileID, c)
			},
			file.EventVersionAdded: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.VersionAdded)
				c := e.Content
				if _, err := tx.Exec(ctx, `INSERT INTO blob_refs (blob_key, file_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, c.BlobKey, e.FileID); err != nil {
					return err
				}
				tag, err := tx.Exec(ctx, `UPDATE files SET current_version = $2, size = $3, sha256 = $4, content_type = $5, blob_key = $6,
					version = $7, updated_at = $8 WHERE id = $1`,
					e.FileID, c.Version, c.Size, c.SHA256, c.ContentType, c.BlobKey, r.StreamVersion, c.UploadedAt)
				if err != nil {
					return err
				}
				if tag.RowsAffected() == 0 { // the file is gone: so is this content
					return enqueueBlobs(ctx, tx, r.RecordedAt, c.BlobKey)
				}
				return insertVersion(ctx, tx, e.FileID, c)
			},
			file.EventRenamed: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.Renamed)
				_, err := tx.Exec(ctx, `UPDATE files SET name = $2, version = $3, updated_at = $4 WHERE id = $1`, e.FileID, e.Name, r.StreamVersion, e.RenamedAt)
				return err
			},
			file.EventVisibilityChanged: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.VisibilityChanged)
				_, err := tx.Exec(ctx, `UPDATE files SET visibility = $2, version = $3, updated_at = $4 WHERE id = $1`, e.FileID, e.Visibility, r.StreamVersion, e.ChangedAt)
				return err
			},
			file.EventMoved: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.Moved)
				var spaceID uuid.UUID
				err := tx.QueryRow(ctx, `SELECT space_id FROM files WHERE id = $1`, e.FileID).Scan(&spaceID)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil
				}
				if err != nil {
					return err
				}
				dead, err := tombstoned(ctx, tx, spaceID, e.FolderID)
				if err != nil {
					return err
				}
				if dead {
					return deleteFiles(ctx, tx, r.RecordedAt, `id = $1`, e.FileID)
				}
				_, err = tx.Exec(ctx, `UPDATE files SET folder_id = $2, version = $3, updated_at = $4 WHERE id = $1`, e.FileID, e.FolderID, r.StreamVersion, e.MovedAt)
				return err
			},
			file.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(file.Deleted)
				if err := enqueueBlobs(ctx, tx, r.RecordedAt, e.BlobKeys...); err != nil {
					return err
				}
				return deleteFiles(ctx, tx, r.RecordedAt, `id = $1`, e.FileID)
			},
			file.EventLinkCreated: bumpFileVersion,
			file.EventLinkRevoked: bumpFileVersion,
			space.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				if err := bury(ctx, tx, r.StreamID); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO file_tombstones (id) SELECT id FROM folders WHERE space_id = $1 ON CONFLICT DO NOTHING`, r.StreamID); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM folders WHERE space_id = $1`, r.StreamID); err != nil {
					return err
				}
				return deleteFiles(ctx, tx, r.RecordedAt, `space_id = $1`, r.StreamID)
			},
		},
	}
}

func tenantOf(r eventstore.Record) uuid.UUID {
	if r.TenantID != nil {
		return *r.TenantID
	}
	return uuid.Nil
}

// bumpFileVersion keeps files.version (the ETag) equal to the stream's version for events that
// change nothing else in the read model.
func bumpFileVersion(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
	_, err := tx.Exec(ctx, `UPDATE files SET version = $2 WHERE id = $1`, r.StreamID, r.StreamVersion)
	return err
}

// tombstoned reports whether the space or the folder (if any) was deleted.
func tombstoned(ctx context.Context, tx pgx.Tx, spaceID uuid.UUID, folderID *uuid.UUID) (bool, error) {
	var dead bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM file_tombstones WHERE id = $1 OR id = $2)`, spaceID, folderID).Scan(&dead)
	return dead, err
}

func bury(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
	_, err := tx.Exec(ctx, `INSERT INTO file_tombstones (id) VALUES ($1) ON CONFLICT DO NOTHING`, id)
	return err
}

func insertVersion(ctx context.Context, tx pgx.Tx, fileID uuid.UUID, c file.Content) error {
	_, err := tx.Exec(ctx, `INSERT INTO file_versions (file_id, version, space_id, tenant_id, blob_key, size, sha256, content_type, uploaded_by, uploaded_at)
		SELECT id, $2, space_id, tenant_id, $3, $4, $5, $6, $7, $8 FROM files WHERE id = $1`,
		fileID, c.Version, c.BlobKey, c.Size, c.SHA256, c.ContentType, c.UploadedBy, c.UploadedAt)
	return err
}

// enqueueBlobs adds deletion work items; at is the event's time, so a rebuild writes the same rows.
func enqueueBlobs(ctx context.Context, tx pgx.Tx, at time.Time, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO blob_deletions (blob_key, enqueued_at, next_attempt_at)
		SELECT k, $2, $2 FROM unnest($1::text[]) k ON CONFLICT DO NOTHING`, keys, at)
	return err
}

// deleteFiles deletes the files matching where (over the files table, with $1 its argument) and their
// versions, and enqueues the content of every version.
func deleteFiles(ctx context.Context, tx pgx.Tx, at time.Time, where string, arg any) error {
	if _, err := tx.Exec(ctx, `INSERT INTO blob_deletions (blob_key, enqueued_at, next_attempt_at)
		SELECT v.blob_key, $2, $2 FROM file_versions v WHERE v.file_id IN (SELECT id FROM files WHERE `+where+`)
		ON CONFLICT DO NOTHING`, arg, at); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM file_versions WHERE file_id IN (SELECT id FROM files WHERE `+where+`)`, arg); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM files WHERE `+where, arg)
	return err
}

// deleteFolderTree deletes a folder, every folder below it and every file in them, burying the
// folders so that later arrivals in them are deleted too.
func deleteFolderTree(ctx context.Context, tx pgx.Tx, root uuid.UUID, at time.Time) error {
	rows, err := tx.Query(ctx, `WITH RECURSIVE tree AS (
			SELECT $1::uuid AS id
			UNION
			SELECT f.id FROM folders f JOIN tree t ON f.parent_id = t.id)
		SELECT id FROM tree`, root)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO file_tombstones (id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING`, ids); err != nil {
		return err
	}
	if err := deleteFiles(ctx, tx, at, `folder_id = ANY ($1)`, ids); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `DELETE FROM folders WHERE id = ANY ($1)`, ids)
	return err
}
