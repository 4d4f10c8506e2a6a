package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// multipartOverhead is what a multipart body may carry beyond the file's bytes (boundaries, part
// headers, the small fields).
const multipartOverhead = 1 << 20

type fileDTO struct {
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
	Version        int64      `json:"version"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	Position       string     `json:"position,omitempty"`
	// IndexState is where the file stands in the search index (reads only).
	IndexState *projections.IndexState `json:"index_state,omitempty"`
}

func fileFromView(v projections.FileView) fileDTO {
	return fileDTO{ID: v.ID, SpaceID: v.SpaceID, FolderID: v.FolderID, Name: v.Name, Visibility: v.Visibility, UploadedBy: v.UploadedBy,
		CurrentVersion: v.CurrentVersion, Size: v.Size, SHA256: v.SHA256, ContentType: v.ContentType, Version: v.Version,
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, IndexState: v.IndexState}
}

func fileFromState(st file.State) fileDTO {
	cur := st.Current()
	return fileDTO{ID: st.ID, SpaceID: st.SpaceID, FolderID: st.FolderID, Name: st.Name, Visibility: st.Visibility, UploadedBy: st.UploadedBy,
		CurrentVersion: cur.Version, Size: cur.Size, SHA256: cur.SHA256, ContentType: cur.ContentType, Version: st.Version,
		CreatedAt: st.CreatedAt.UTC(), UpdatedAt: st.UpdatedAt.UTC()}
}

func (s *Server) fileCommandResponse(c echo.Context, status int, r commands.FileResult) error {
	dto := fileFromState(r.File)
	dto.Position = withPosition(c, r.Position)
	setETag(c, r.File.Version)
	return c.JSON(status, dto)
}

type folderDTO struct {
	ID        uuid.UUID  `json:"id"`
	SpaceID   uuid.UUID  `json:"space_id"`
	ParentID  *uuid.UUID `json:"parent_id"`
	Name      string     `json:"name"`
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Position  string     `json:"position,omitempty"`
}

func folderFromState(f file.Folder) folderDTO {
	return folderDTO{ID: f.ID, SpaceID: f.SpaceID, ParentID: f.ParentID, Name: f.Name, Version: f.Version,
		CreatedAt: f.CreatedAt.UTC(), UpdatedAt: f.UpdatedAt.UTC()}
}

func folderFromView(v projections.FolderView) folderDTO {
	return folderDTO{ID: v.ID, SpaceID: v.SpaceID, ParentID: v.ParentID, Name: v.Name, Version: v.Version, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt}
}

// optionalID is a JSON field that may be absent (no change), null (the root) or an id.
type optionalID struct {
	Set bool
	ID  *uuid.UUID
}

func (o *optionalID) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.ID = nil
		return nil
	}
	var id uuid.UUID
	if err := json.Unmarshal(b, &id); err != nil {
		return err
	}
	o.ID = &id
	return nil
}

func (o optionalID) ptr() **uuid.UUID {
	if !o.Set {
		return nil
	}
	return &o.ID
}

// upload is what a multipart upload carried.
type upload struct {
	content    file.Content
	filename   string
	folderID   *uuid.UUID
	visibility string
	hash       []byte // what identifies the request for Idempotency-Key
}

// readUpload streams a multipart/form-data body: the "file" part goes to the bucket as it arrives
// (never whole in memory), "folder_id" and "visibility" are small fields, in any order. Anything
// else is refused. On error nothing stays stored.
func (s *Server) readUpload(c echo.Context, fields bool) (upload, error) {
	var up upload
	req := c.Request()
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil || mt != "multipart/form-data" {
		return up, domain.Errorf("unsupported_media_type", "the body must be multipart/form-data with a \"file\" part")
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, s.deps.MaxUpload+multipartOverhead)
	mr, err := req.MultipartReader()
	if err != nil {
		return up, domain.Errorf(domain.CodeBadRequest, "malformed multipart body: %v", err)
	}
	stored := false
	fail := func(err error) (upload, error) {
		if stored {
			_ = s.deps.Commands.DiscardContent(context.WithoutCancel(req.Context()), up.content.BlobKey)
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			err = domain.Errorf(domain.CodeTooLarge, "the file is larger than the limit of %d bytes", s.deps.MaxUpload)
		}
		return upload{}, err
	}
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return fail(err)
			}
			return fail(domain.Errorf(domain.CodeBadRequest, "malformed multipart body: %v", err))
		}
		name := part.FormName()
		if seen[name] {
			return fail(domain.Errorf(domain.CodeBadRequest, "the part %q appears twice", name))
		}
		seen[name] = true
		switch {
		case name == "file":
			up.filename = part.FileName()
			up.content, err = s.deps.Commands.StoreContent(req.Context(), up.filename, part, s.deps.MaxUpload)
			if err != nil {
				return fail(err)
			}
			stored = true
		case fields && (name == "folder_id" || name == "visibility"):
			raw, err := io.ReadAll(io.LimitReader(part, 257))
			if err != nil {
				return fail(domain.Errorf(domain.CodeBadRequest, "malformed multipart body: %v", err))
			}
			if len(raw) > 256 {
				return fail(domain.Validation{name: "is too long"}.Err())
			}
			v := strings.TrimSpace(string(raw))
			if name == "visibility" {
				up.visibility = v
			} else if v != "" {
				id, err := uuid.Parse(v)
				if err != nil {
					return fail(domain.Errorf(domain.CodeBadRequest, "folder_id %q is not a UUID", v))
				}
				up.folderID = &id
			}
		default:
			return fail(domain.Errorf(domain.CodeBadRequest, "unknown part %q", name))
		}
	}
	if !stored {
		return up, domain.Validation{"file": "is required (a part named \"file\")"}.Err()
	}
	folder := ""
	if up.folderID != nil {
		folder = up.folderID.String()
	}
	up.hash = []byte(strings.Join([]string{up.filename, folder, up.visibility, up.content.SHA256}, "\x00"))
	return up, nil
}

func (s *Server) uploadFile(c echo.Context) error {
	spaceID, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	// Refuse before storing a byte when the caller may not upload here.
	if err := s.deps.Commands.CanUpload(ctx, userID(c), spaceID); err != nil {
		return err
	}
	up, err := s.readUpload(c, true)
	if err != nil {
		return err
	}
	if up.visibility == "" {
		up.visibility = file.Space
	}
	return s.recordUpload(c, http.StatusCreated, up, func(ctx context.Context, cc commands.Context) (commands.FileResult, error) {
		return s.deps.Commands.UploadFile(ctx, cc, spaceID, up.folderID, up.filename, up.visibility, up.content)
	})
}

// recordUpload runs the command that records stored content, and answers with the file. The command
// runs to its end even if the client goes away: once the content is stored, whether its event was
// appended must be known, or the content could be deleted under a committed event. Only a definite
// refusal (a domain error) discards the content at once; anything else leaves it to the orphan
// sweep, which deletes it only if no event refers to it. An idempotent repeat answers the first
// upload's file and discards the new copy.
func (s *Server) recordUpload(c echo.Context, status int, up upload, record func(context.Context, commands.Context) (commands.FileResult, error)) error {
	ctx := context.WithoutCancel(c.Request().Context())
	cc, err := commandContext(c, up.hash)
	var r commands.FileResult
	if err == nil {
		r, err = record(ctx, cc)
	}
	var refused *domain.Error
	switch {
	case err == nil && r.File.Current().BlobKey != up.content.BlobKey && !hasVersion(r.File, up.content.BlobKey):
		_ = s.deps.Commands.DiscardContent(ctx, up.content.BlobKey)
	case errors.As(err, &refused):
		_ = s.deps.Commands.DiscardContent(ctx, up.content.BlobKey)
		return err
	case err != nil:
		return err
	}
	return s.fileCommandResponse(c, status, r)
}

// hasVersion reports whether one of st's versions is stored under key.
func hasVersion(st file.State, key string) bool {
	for _, v := range st.Versions {
		if v.BlobKey == key {
			return true
		}
	}
	return false
}

func (s *Server) putFileContent(c echo.Context) error {
	id, err := pathUUID(c, "file_id")
	if err != nil {
		return err
	}
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	// Refuse before storing a byte when the caller may not change the file.
	if err := s.deps.Commands.CanWriteFile(ctx, userID(c), id); err != nil {
		return err
	}
	up, err := s.readUpload(c, false)
	if err != nil {
		return err
	}
	return s.recordUpload(c, http.StatusOK, up, func(ctx context.Context, cc commands.Context) (commands.FileResult, error) {
		return s.deps.Commands.AddFileVersion(ctx, cc, id, expected, up.content)
	})
}

func (s *Server) getFile(c echo.Context) error {
	if asOf := c.QueryParam("as_of"); asOf != "" {
		id, err := pathUUID(c, "file_id")
		if err != nil {
			return err
		}
		return stateAsOf(s, c, id, asOf, "file", func(ctx context.Context) error {
			_, err := s.deps.Commands.FileFor(ctx, userID(c), id)
			return err
		}, file.Evolve, file.State.Exists, func(st file.State) int64 { return st.Version }, fileFromState)
	}
	return getOne(s, c, "file_id", []string{projections.FilesProjector, projections.PermissionsProjector}, s.deps.Queries.File,
		func(v projections.FileView) int64 { return v.Version }, fileFromView)
}

func (s *Server) listFiles(c echo.Context) error {
	var f projections.FileFilter
	switch raw := c.QueryParam("folder_id"); raw {
	case "":
	case "root":
		f.Root = true
	default:
		id, err := uuid.Parse(raw)
		if err != nil {
			return domain.Errorf(domain.CodeBadRequest, "folder_id %q is not a UUID (or \"root\")", raw)
		}
		f.FolderID = &id
	}
	f.Query = c.QueryParam("q")
	if len(f.Query) > 255 {
		return domain.Validation{"q": "must be at most 255 characters"}.Err()
	}
	return listUnder(s, c, "space_id", []string{projections.FilesProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.FileView, *string, error) {
			page, err := s.deps.Queries.FilesOf(ctx, viewer, id, f, cursor, limit)
			return page.Items, page.NextCursor, err
		}, fileFromView)
}

func (s *Server) listFileVersions(c echo.Context) error {
	return listUnder(s, c, "file_id", []string{projections.FilesProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.FileVersionView, *string, error) {
			page, err := s.deps.Queries.FileVersions(ctx, viewer, id, cursor, limit)
			return page.Items, page.NextCursor, err
		}, same[projections.FileVersionView])
}

func (s *Server) getFileContent(c echo.Context) error {
	id, err := pathUUID(c, "file_id")
	if err != nil {
		return err
	}
	var n int64
	if raw := c.Param("n"); raw != "" {
		if n, err = strconv.ParseInt(raw, 10, 64); err != nil || n < 1 {
			return domain.Errorf(domain.CodeBadRequest, "version %q is not a positive number", raw)
		}
	}
	if err := s.consistent(c, projections.FilesProjector, projections.PermissionsProjector); err != nil {
		return err
	}
	f, v, err := s.deps.Queries.FileContent(c.Request().Context(), userID(c), id, n)
	if err != nil {
		return err
	}
	return s.serveContent(c, f.Name, file.Content{BlobKey: v.BlobKey, Size: v.Size, SHA256: v.SHA256, ContentType: v.ContentType})
}

// getPublicFile serves a file's current content through a public link, without authentication.
func (s *Server) getPublicFile(c echo.Context) error {
	st, content, err := s.deps.Commands.PublicFile(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	return s.serveContent(c, st.Name, content)
}

// inlineTypes are shown in the browser; everything else is a download.
var inlineTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
	"application/pdf": true, "text/plain": true, "audio/mpeg": true, "video/mp4": true}

// serveContent streams stored content with its type, length, ETag (its SHA-256) and a single byte
// range when asked (206; 416 when unsatisfiable; several ranges get the whole content). A matching
// If-None-Match is 304. The content runs in a sandbox: user content never executes as this origin.
func (s *Server) serveContent(c echo.Context, name string, ct file.Content) error {
	h := c.Response().Header()
	etag := `"` + ct.SHA256 + `"`
	h.Set("ETag", etag)
	h.Set("Accept-Ranges", "bytes")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Cache-Control", "private, no-cache")
	mediaType, _, _ := mime.ParseMediaType(ct.ContentType)
	disposition := "attachment"
	if inlineTypes[mediaType] {
		disposition = "inline"
	}
	h.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": name}))
	if inm := c.Request().Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		return c.NoContent(http.StatusNotModified)
	}
	offset, length, status := int64(0), ct.Size, http.StatusOK
	if rh := c.Request().Header.Get("Range"); rh != "" && ct.Size > 0 {
		ir := c.Request().Header.Get("If-Range")
		if ir == "" || ir == etag {
			start, end, ok, satisfiable := parseRange(rh, ct.Size)
			switch {
			case ok && !satisfiable:
				h.Set("Content-Range", fmt.Sprintf("bytes */%d", ct.Size))
				return domain.Errorf("range_not_satisfiable", "the range %q is outside the %d bytes of content", rh, ct.Size)
			case ok:
				offset, length, status = start, end-start+1, http.StatusPartialContent
				h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, ct.Size))
			}
		}
	}
	r, err := s.deps.Commands.OpenContent(c.Request().Context(), ct.BlobKey, offset, length)
	if err != nil {
		return fmt.Errorf("open content %s: %w", ct.BlobKey, err)
	}
	defer r.Close()
	h.Set("Content-Type", ct.ContentType)
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	c.Response().WriteHeader(status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err = io.Copy(c.Response(), r)
	return err // headers are out: a failure here ends the response early, which the client sees
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// parseRange reads a Range header of one byte range ("bytes=a-b", "bytes=a-", "bytes=-n") against
// size. ok is false for anything else (several ranges, other units, malformed), which is served as
// the whole content; satisfiable is false for a range outside the content.
func parseRange(h string, size int64) (start, end int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	switch {
	case a == "": // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 {
			return 0, 0, true, false
		}
		if n > size {
			n = size
		}
		return size - n, size - 1, true, true
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s < 0 {
			return 0, 0, false, false
		}
		e := size - 1
		if b != "" {
			if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
				return 0, 0, false, false
			}
			if e > size-1 {
				e = size - 1
			}
		}
		if s >= size {
			return 0, 0, true, false
		}
		return s, e, true, true
	}
}

func (s *Server) updateFile(c echo.Context) error {
	id, err := pathUUID(c, "file_id")
	if err != nil {
		return err
	}
	var in struct {
		Name       *string    `json:"name"`
		FolderID   optionalID `json:"folder_id"`
		Visibility *string    `json:"visibility"`
	}
	cc, expected, err := readCommand(c, &in, true)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.UpdateFile(c.Request().Context(), cc, id, expected, in.Name, in.FolderID.ptr(), in.Visibility)
	if err != nil {
		return err
	}
	return s.fileCommandResponse(c, http.StatusOK, r)
}

func (s *Server) deleteFile(c echo.Context) error {
	return s.pathCommand(c, true, []string{"file_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, expected int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.DeleteFile(ctx, cc, ids[0], expected)
		return r.Position, err
	})
}

func (s *Server) fileHistory(c echo.Context) error {
	return s.streamHistory(c, "file_id", func(ctx context.Context, id uuid.UUID) error {
		_, err := s.deps.Commands.FileFor(ctx, userID(c), id)
		return err
	})
}

type linkDTO struct {
	ID        uuid.UUID  `json:"id"`
	Token     string     `json:"token,omitempty"`
	URL       string     `json:"url,omitempty"`
	ExpiresAt *time.Time `json:"expires_at"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	Live      *bool      `json:"live,omitempty"`
	Revoked   *bool      `json:"revoked,omitempty"`
	Position  string     `json:"position,omitempty"`
}

func (s *Server) createFileLink(c echo.Context) error {
	id, err := pathUUID(c, "file_id")
	if err != nil {
		return err
	}
	var in struct {
		ExpiresAt *time.Time `json:"expires_at"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.CreateFileLink(c.Request().Context(), cc, id, in.ExpiresAt)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, linkDTO{ID: r.LinkID, Token: r.Token, URL: "/api/v1/public/files/" + r.Token,
		ExpiresAt: r.ExpiresAt, Position: withPosition(c, r.Position)})
}

// listFileLinks lists a file's links (never their tokens) to whoever may read the file.
func (s *Server) listFileLinks(c echo.Context) error {
	id, err := pathUUID(c, "file_id")
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	after, err := uuid.Nil, nil
	if cur := c.QueryParam("cursor"); cur != "" {
		if after, err = uuid.Parse(cur); err != nil {
			return domain.Errorf(domain.CodeBadRequest, "cursor %q is not valid", cur)
		}
	}
	st, err := s.deps.Commands.FileFor(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	now := time.Now()
	out := pageDTO[linkDTO]{Items: []linkDTO{}}
	for _, l := range st.Links { // in creation order; link ids are UUIDv7
		if l.ID.String() <= after.String() {
			continue
		}
		if len(out.Items) == limit {
			cur := out.Items[limit-1].ID.String()
			out.NextCursor = &cur
			break
		}
		live, revoked, created := l.Live(now), l.Revoked, l.CreatedAt.UTC()
		out.Items = append(out.Items, linkDTO{ID: l.ID, ExpiresAt: l.ExpiresAt, CreatedAt: &created, Live: &live, Revoked: &revoked})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) revokeFileLink(c echo.Context) error {
	return s.pathCommand(c, false, []string{"file_id", "link_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, _ int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.RevokeFileLink(ctx, cc, ids[0], ids[1])
		return r.Position, err
	})
}

func (s *Server) createFolder(c echo.Context) error {
	spaceID, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	var in struct {
		Name     string     `json:"name"`
		ParentID *uuid.UUID `json:"parent_id"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.CreateFolder(c.Request().Context(), cc, spaceID, in.ParentID, in.Name)
	if err != nil {
		return err
	}
	dto := folderFromState(r.Folder)
	dto.Position = withPosition(c, r.Position)
	setETag(c, r.Folder.Version)
	return c.JSON(http.StatusCreated, dto)
}

func (s *Server) updateFolder(c echo.Context) error {
	id, err := pathUUID(c, "folder_id")
	if err != nil {
		return err
	}
	var in struct {
		Name     *string    `json:"name"`
		ParentID optionalID `json:"parent_id"`
	}
	cc, expected, err := readCommand(c, &in, true)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.UpdateFolder(c.Request().Context(), cc, id, expected, in.Name, in.ParentID.ptr())
	if err != nil {
		return err
	}
	dto := folderFromState(r.Folder)
	dto.Position = withPosition(c, r.Position)
	setETag(c, r.Folder.Version)
	return c.JSON(http.StatusOK, dto)
}

func (s *Server) deleteFolder(c echo.Context) error {
	return s.pathCommand(c, true, []string{"folder_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, expected int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.DeleteFolder(ctx, cc, ids[0], expected)
		return r.Position, err
	})
}

func (s *Server) getFolder(c echo.Context) error {
	return getOne(s, c, "folder_id", []string{projections.FilesProjector, projections.PermissionsProjector}, s.deps.Queries.Folder,
		func(v projections.FolderView) int64 { return v.Version }, folderFromView)
}

func (s *Server) listFolders(c echo.Context) error {
	var parent *uuid.UUID
	if raw := c.QueryParam("parent_id"); raw != "" {
		id, err := uuid.Parse(raw)
		if err != nil {
			return domain.Errorf(domain.CodeBadRequest, "parent_id %q is not a UUID", raw)
		}
		parent = &id
	}
	return listUnder(s, c, "space_id", []string{projections.FilesProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.FolderView, *string, error) {
			page, err := s.deps.Queries.FoldersOf(ctx, viewer, id, parent, cursor, limit)
			return page.Items, page.NextCursor, err
		}, folderFromView)
}

// LimitPublicLinkIP bounds public-link downloads per client IP (links are unauthenticated; their
// tokens are unguessable, and this also bounds how fast one client can pull content through them).
var LimitPublicLinkIP = Limit{Rate: 600, Burst: 60, Period: time.Minute}

func (s *Server) limitPublicLinks(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.limit(c, "public-link-ip:"+c.RealIP(), LimitPublicLinkIP); err != nil {
			return err
		}
		return next(c)
	}
}
