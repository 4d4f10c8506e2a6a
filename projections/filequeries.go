package projections

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
)

// FileView is a file as the files read model holds it, with its current content's metadata.
type FileView struct {
	ID             uuid.UUID  `json:"id"`
	SpaceID        uuid.UUID  `json:"space_id"`
	FolderID       *uuid.UUID `json:"folder_id"`
	Name           string     `json:"name"`
	Visibility     string     `json:"visibility"`
	UploadedBy     uuid.UUID  `json:"uploaded_by"`
	CurrentVersion int64      `json:"current_version"`
	Size           int64      `json:"size"`
	SHA256         string     `json:"sha256"`
	ContentType    string     `json:"content_type"`
	BlobKey        string     `json:"-"`
	Version        int64      `json:"version"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	// IndexState is the search index's state of the file (single reads only).
	IndexState *IndexState `json:"index_state,omitempty"`
}

// FileVersionView is one stored version of a file's content.
type FileVersionView struct {
	Version     int64     `json:"version"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	BlobKey     string    `json:"-"`
	UploadedBy  uuid.UUID `json:"uploaded_by"`
	UploadedAt  time.Time `json:"uploaded_at"`
}

// FolderView is a folder as the files read model holds it.
type FolderView struct {
	ID        uuid.UUID  `json:"id"`
	SpaceID   uuid.UUID  `json:"space_id"`
	ParentID  *uuid.UUID `json:"parent_id"`
	Name      string     `json:"name"`
	Version   int64      `json:"version"`
	CreatedBy *uuid.UUID `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// readableFile is the condition that viewer ($2; $3 is Anyone) may read file row f: a public file
// anyone; an organization file the organization's members (their read row on the organization, the
// file's tenant) and the space's readers; a space file the space's readers; a private file its
// uploader while they may read the space.
const readableFile = `(f.visibility = 'public'
	OR (f.visibility = 'organization' AND EXISTS (SELECT 1 FROM permissions p
		WHERE p.principal_id = $2 AND p.permission = 'read' AND p.resource_id = f.tenant_id))
	OR ((f.visibility IN ('space', 'organization') OR f.uploaded_by = $2) AND EXISTS (SELECT 1 FROM permissions p
		WHERE p.principal_id IN ($2, $3) AND p.permission = 'read' AND p.resource_id = f.space_id)))`

const fileColumns = `f.id, f.space_id, f.folder_id, f.name, f.visibility, f.uploaded_by, f.current_version, f.size, f.sha256,
	f.content_type, f.blob_key, f.version, f.created_at, f.updated_at`

func scanFile(row pgx.Row, extra ...any) (FileView, error) {
	var v FileView
	err := row.Scan(append([]any{&v.ID, &v.SpaceID, &v.FolderID, &v.Name, &v.Visibility, &v.UploadedBy, &v.CurrentVersion, &v.Size, &v.SHA256,
		&v.ContentType, &v.BlobKey, &v.Version, &v.CreatedAt, &v.UpdatedAt}, extra...)...)
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v, err
}

// File returns a file viewer may read; CodeNotFound otherwise.
func (q *Queries) File(ctx context.Context, viewer, id uuid.UUID) (FileView, error) {
	var v FileView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) (err error) {
		var state, reason *string
		v, err = scanFile(rows, &state, &reason)
		if state != nil {
			v.IndexState = &IndexState{State: *state, Reason: reason}
		}
		found = true
		return err
	}, `SELECT `+fileColumns+`, sd.state, sd.reason FROM files f LEFT JOIN search_docs sd ON sd.doc_id = f.id
		WHERE f.id = $1 AND `+readableFile, id, viewer, Anyone)
	if err == nil && !found {
		return v, domain.Errorf(domain.CodeNotFound, "file not found")
	}
	return v, err
}

// FileContent returns version n (0: the current one) of a file viewer may read; CodeNotFound
// otherwise.
func (q *Queries) FileContent(ctx context.Context, viewer, id uuid.UUID, n int64) (FileView, FileVersionView, error) {
	var f FileView
	var c FileVersionView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) error {
		found = true
		return rows.Scan(&f.ID, &f.Name, &f.Visibility, &c.Version, &c.Size, &c.SHA256, &c.ContentType, &c.BlobKey, &c.UploadedBy, &c.UploadedAt)
	}, `SELECT f.id, f.name, f.visibility, v.version, v.size, v.sha256, v.content_type, v.blob_key, v.uploaded_by, v.uploaded_at
		FROM files f JOIN file_versions v ON v.file_id = f.id AND v.version = CASE WHEN $4 > 0 THEN $4 ELSE f.current_version END
		WHERE f.id = $1 AND `+readableFile, id, viewer, Anyone, n)
	if err == nil && !found {
		return f, c, domain.Errorf(domain.CodeNotFound, "file or version not found")
	}
	c.UploadedAt = c.UploadedAt.UTC()
	return f, c, err
}

// FileVersionPage is one page of a file's versions.
type FileVersionPage struct {
	Items      []FileVersionView
	NextCursor *string
}

// FileVersions lists the stored versions of a file viewer may read, oldest first, limit per page,
// after version number cursor ("" for the first page); CodeNotFound when viewer may not read it.
func (q *Queries) FileVersions(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) (FileVersionPage, error) {
	var after int64
	if cursor != "" {
		var err error
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil || after < 0 {
			return FileVersionPage{}, domain.Errorf(domain.CodeBadRequest, "cursor %q is not valid", cursor)
		}
	}
	var readable bool
	out := []FileVersionView{}
	err := q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM files f WHERE f.id = $1 AND `+readableFile+`)`, id, viewer, Anyone).Scan(&readable); err != nil || !readable {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT version, size, sha256, content_type, blob_key, uploaded_by, uploaded_at
			FROM file_versions WHERE file_id = $1 AND version > $2 ORDER BY version LIMIT $3`, id, after, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c FileVersionView
			if err := rows.Scan(&c.Version, &c.Size, &c.SHA256, &c.ContentType, &c.BlobKey, &c.UploadedBy, &c.UploadedAt); err != nil {
				return err
			}
			c.UploadedAt = c.UploadedAt.UTC()
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return FileVersionPage{}, fmt.Errorf("list file versions: %w", err)
	}
	if !readable {
		return FileVersionPage{}, domain.Errorf(domain.CodeNotFound, "file not found")
	}
	page := FileVersionPage{Items: out}
	page.Items, page.NextCursor = trimPage(out, limit, func(v FileVersionView) string { return strconv.FormatInt(v.Version, 10) })
	return page, nil
}

// FileFilter narrows a file listing.
type FileFilter struct {
	FolderID *uuid.UUID // files directly in this folder
	Root     bool       // files at the space's root (FolderID nil)
	Query    string     // a case-insensitive part of the name
}

// FilePage is one page of a file listing.
type FilePage struct {
	Items      []FileView
	NextCursor *string
}

// FilesOf lists the files of a space that viewer may read, oldest first; CodeNotFound when viewer may
// not read the space (or the folder filtered on is not one of its live folders).
func (q *Queries) FilesOf(ctx context.Context, viewer, spaceID uuid.UUID, filter FileFilter, cursor string, limit int) (FilePage, error) {
	after, err := parseCursor(cursor)
	if err != nil {
		return FilePage{}, err
	}
	page := FilePage{Items: []FileView{}}
	err = q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT `+readableSpace("$1")+` AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM folders WHERE id = $4 AND space_id = $1))`,
			spaceID, viewer, Anyone, filter.FolderID).Scan(&ok); err != nil {
			return fmt.Errorf("check space permission: %w", err)
		}
		if !ok {
			if filter.FolderID != nil {
				return domain.Errorf(domain.CodeNotFound, "space or folder not found")
			}
			return domain.Errorf(domain.CodeNotFound, "space not found")
		}
		rows, err := tx.Query(ctx, `SELECT `+fileColumns+` FROM files f
			WHERE f.space_id = $1 AND f.id > $4 AND `+readableFile+`
			  AND ($5::uuid IS NULL OR f.folder_id = $5) AND (NOT $6 OR f.folder_id IS NULL)
			  AND ($7 = '' OR strpos(lower(f.name), lower($7)) > 0)
			ORDER BY f.id LIMIT $8`, spaceID, viewer, Anyone, after, filter.FolderID, filter.Root, filter.Query, limit+1)
		if err != nil {
			return fmt.Errorf("list files: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scanFile(rows)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, v)
		}
		return rows.Err()
	})
	if err != nil {
		return FilePage{}, err
	}
	page.Items, page.NextCursor = trimPage(page.Items, limit, func(v FileView) string { return v.ID.String() })
	return page, nil
}

const folderColumns = `d.id, d.space_id, d.parent_id, d.name, d.version, d.created_by, d.created_at, d.updated_at`

func scanFolder(row pgx.Row) (FolderView, error) {
	var v FolderView
	err := row.Scan(&v.ID, &v.SpaceID, &v.ParentID, &v.Name, &v.Version, &v.CreatedBy, &v.CreatedAt, &v.UpdatedAt)
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v, err
}

// Folder returns a folder of a space viewer may read; CodeNotFound otherwise.
func (q *Queries) Folder(ctx context.Context, viewer, id uuid.UUID) (FolderView, error) {
	var v FolderView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) (err error) {
		v, err = scanFolder(rows)
		found = true
		return err
	}, `SELECT `+folderColumns+` FROM folders d WHERE d.id = $1 AND `+readableSpace("d.space_id"), id, viewer, Anyone)
	if err == nil && !found {
		return v, domain.Errorf(domain.CodeNotFound, "folder not found")
	}
	return v, err
}

// FolderPage is one page of a folder listing.
type FolderPage struct {
	Items      []FolderView
	NextCursor *string
}

// FoldersOf lists the folders directly under parent (nil: the space's root), oldest first, limit per
// page after cursor ("" for the first page).
func (q *Queries) FoldersOf(ctx context.Context, viewer, spaceID uuid.UUID, parent *uuid.UUID, cursor string, limit int) (FolderPage, error) {
	after, err := parseCursor(cursor)
	if err != nil {
		return FolderPage{}, err
	}
	out := []FolderView{}
	err = q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT `+readableSpace("$1")+` AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM folders WHERE id = $4 AND space_id = $1))`,
			spaceID, viewer, Anyone, parent).Scan(&ok); err != nil {
			return fmt.Errorf("check space permission: %w", err)
		}
		if !ok {
			return domain.Errorf(domain.CodeNotFound, "space or folder not found")
		}
		rows, err := tx.Query(ctx, `SELECT `+folderColumns+` FROM folders d
			WHERE d.space_id = $1 AND d.parent_id IS NOT DISTINCT FROM $2 AND d.id > $3 ORDER BY d.id LIMIT $4`, spaceID, parent, after, limit+1)
		if err != nil {
			return fmt.Errorf("list folders: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scanFolder(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	if err != nil {
		return FolderPage{}, err
	}
	page := FolderPage{Items: out}
	page.Items, page.NextCursor = trimPage(out, limit, func(v FolderView) string { return v.ID.String() })
	return page, nil
}
