package commands

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// BlobPrefix is where file content lives in the bucket: BlobPrefix + a UUIDv7 per stored version.
// The orphan sweep looks only under it.
const BlobPrefix = "blobs/"

// LinkScope is the reservation scope of public link token hashes (stream: the file).
const LinkScope = "file.link"

const linkPrefix = "atlf_"

// FileResult is a file after a command, with the position of the command's last event.
type FileResult struct {
	File     file.State
	Position eventstore.Position
}

// FolderResult is a folder after a command.
type FolderResult struct {
	Folder   file.Folder
	Position eventstore.Position
}

// File loads a file aggregate.
func (h *Handlers) File(ctx context.Context, id uuid.UUID) (file.State, error) {
	st, _, err := load(ctx, h.store, id, 0, file.Evolve)
	return st, err
}

// Folder loads a folder aggregate.
func (h *Handlers) Folder(ctx context.Context, id uuid.UUID) (file.Folder, error) {
	f, _, err := load(ctx, h.store, id, 0, file.EvolveFolder)
	return f, err
}

// FileViewer loads a space and says what actor is to its files.
func (h *Handlers) FileViewer(ctx context.Context, actor, spaceID uuid.UUID) (space.State, file.Viewer, error) {
	st, orgRole, err := h.SpaceFor(ctx, actor, spaceID)
	if err != nil || !st.Exists() {
		return st, file.Viewer{ID: actor}, err
	}
	return st, file.Viewer{ID: actor, SpaceLive: true, ReadSpace: st.CanRead(actor, orgRole), WriteSpace: st.CanWrite(actor, orgRole),
		OrgMember: st.OrgID != nil && orgRole != "", SpaceIsPersonal: st.OrgID == nil, SpaceOwner: st.OwnerUserID}, nil
}

// folderChain walks from folder id up to the root of spaceID. It returns the folder ids from id
// upwards and ok = false when one of them is missing, deleted or in another space (the folder is then
// gone, or never was).
func (h *Handlers) folderChain(ctx context.Context, spaceID uuid.UUID, id *uuid.UUID) ([]uuid.UUID, bool, error) {
	var chain []uuid.UUID
	for cur := id; cur != nil; {
		if len(chain) > file.MaxDepth {
			return chain, false, fmt.Errorf("folder %s: more than %d ancestors", *id, file.MaxDepth)
		}
		f, err := h.Folder(ctx, *cur)
		if err != nil {
			return nil, false, err
		}
		if !f.Exists() || f.SpaceID != spaceID {
			return chain, false, nil
		}
		chain = append(chain, f.ID)
		cur = f.ParentID
	}
	return chain, true, nil
}

// fileFor loads a file, its space and the viewer, and says whether the file is live: it, its space
// and every folder above it exist.
func (h *Handlers) fileFor(ctx context.Context, actor, id uuid.UUID) (file.State, space.State, file.Viewer, int64, error) {
	st, err := h.File(ctx, id)
	if err != nil || !st.Exists() {
		return st, space.State{}, file.Viewer{ID: actor}, 0, err
	}
	sp, v, err := h.FileViewer(ctx, actor, st.SpaceID)
	if err != nil {
		return st, sp, v, 0, err
	}
	if _, ok, err := h.folderChain(ctx, st.SpaceID, st.FolderID); err != nil || !ok {
		return st, sp, file.Viewer{ID: actor}, 0, err
	}
	return st, sp, v, st.Version, nil
}

// FileFor returns a file viewer may read, for reads that go to the log (content, history).
// CodeNotFound otherwise.
func (h *Handlers) FileFor(ctx context.Context, viewer, id uuid.UUID) (file.State, error) {
	st, _, v, _, err := h.fileFor(ctx, viewer, id)
	if err == nil && !st.CanRead(v) {
		err = domain.Errorf(domain.CodeNotFound, "file not found")
	}
	return st, err
}

// CanWriteFile fails as a new version of file id would before any byte is stored: CodeNotFound when
// actor may not read the file, CodeForbidden when they may not change it.
func (h *Handlers) CanWriteFile(ctx context.Context, actor, id uuid.UUID) error {
	st, _, v, _, err := h.fileFor(ctx, actor, id)
	switch {
	case err != nil:
		return err
	case !st.CanRead(v):
		return domain.Errorf(domain.CodeNotFound, "file not found")
	case !st.CanWrite(v):
		return domain.Errorf(domain.CodeForbidden, "only the space's editors and managers change its files")
	}
	return nil
}

// CanUpload fails as an upload would before any byte is stored: CodeNotFound when actor may not read
// the space, CodeForbidden when they may not write it.
func (h *Handlers) CanUpload(ctx context.Context, actor, spaceID uuid.UUID) error {
	_, v, err := h.FileViewer(ctx, actor, spaceID)
	switch {
	case err != nil:
		return err
	case !v.ReadSpace:
		return domain.Errorf(domain.CodeNotFound, "space not found")
	case !v.WriteSpace:
		return domain.Errorf(domain.CodeForbidden, "only the space's editors and managers upload files")
	}
	return nil
}

// StoreContent streams r into a new object in the bucket and returns what a file version records of
// it: key, size, SHA-256 and content type (sniffed from the first 512 bytes; for generic text or
// binary, the name's extension decides when it is known). More than limit bytes is CodeTooLarge and
// stores nothing; so does any read error or a cancelled ctx.
func (h *Handlers) StoreContent(ctx context.Context, name string, r io.Reader, limit int64) (file.Content, error) {
	if h.bucket == nil {
		return file.Content{}, errors.New("no blob bucket configured")
	}
	br := bufio.NewReaderSize(r, 512)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return file.Content{}, fmt.Errorf("read the upload: %w", err)
	}
	ctype := DetectContentType(name, head)
	key := BlobPrefix + uuid.Must(uuid.NewV7()).String()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := h.bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: ctype})
	if err != nil {
		return file.Content{}, fmt.Errorf("open blob %s: %w", key, err)
	}
	sum := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, sum), io.LimitReader(br, limit+1), make([]byte, 1<<20))
	if err == nil && n > limit {
		err = domain.Errorf(domain.CodeTooLarge, "the file is larger than the limit of %d bytes", limit)
	}
	if err != nil {
		cancel() // a writer closed after its context ends stores nothing
		_ = w.Close()
		return file.Content{}, err
	}
	if err := w.Close(); err != nil {
		return file.Content{}, fmt.Errorf("store blob %s: %w", key, err)
	}
	return file.Content{BlobKey: key, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil)), ContentType: ctype}, nil
}

// DiscardContent deletes stored content that no event came to reference (an upload refused after its
// bytes were stored). Failing that, the orphan sweep removes it later.
func (h *Handlers) DiscardContent(ctx context.Context, key string) error {
	if err := h.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return err
	}
	return nil
}

// DetectContentType names the media type of content from its first bytes and its file name.
func DetectContentType(name string, head []byte) string {
	sniffed := http.DetectContentType(head)
	generic := strings.HasPrefix(sniffed, "application/octet-stream") || strings.HasPrefix(sniffed, "text/plain")
	if generic {
		if byExt := mime.TypeByExtension(strings.ToLower(filepath.Ext(name))); byExt != "" {
			return byExt
		}
	}
	return sniffed
}

// OpenContent opens stored content for reading, length bytes from offset (length < 0: to the end).
func (h *Handlers) OpenContent(ctx context.Context, key string, offset, length int64) (*blob.Reader, error) {
	return h.bucket.NewRangeReader(ctx, key, offset, length, nil)
}

// UploadFile records an uploaded file whose content StoreContent stored. Errors: CodeInvalid,
// CodeNotFound (space or folder), CodeForbidden. The caller discards the content when it fails.
func (h *Handlers) UploadFile(ctx context.Context, cc Context, spaceID uuid.UUID, folderID *uuid.UUID, name, visibility string, content file.Content) (FileResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.fileReplay(ctx, prev, err)
	}
	sp, v, err := h.FileViewer(ctx, cc.Actor, spaceID)
	if err != nil {
		return FileResult{}, err
	}
	folderOK := true
	if folderID != nil && v.ReadSpace {
		if _, folderOK, err = h.folderChain(ctx, spaceID, folderID); err != nil {
			return FileResult{}, err
		}
	}
	id := uuid.Must(uuid.NewV7())
	evs, err := file.Decide(file.State{}, file.Upload{FileID: id, SpaceID: spaceID, FolderID: folderID, FolderOK: folderOK,
		Viewer: v, Name: name, Visibility: visibility, Content: content}, h.now())
	if err != nil {
		return FileResult{}, err
	}
	tenant := sp.Owner()
	res, prev, err := h.appendIdempotent(ctx, nil, cc, id, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: file.StreamType, StreamID: id, TenantID: &tenant, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	})
	return h.fileOutcome(ctx, file.State{}, evs, res, prev, err)
}

// AddFileVersion records new content for a file. Errors as changeFile's.
func (h *Handlers) AddFileVersion(ctx context.Context, cc Context, id uuid.UUID, expected int64, content file.Content) (FileResult, error) {
	return h.changeFile(ctx, cc, id, expected, false, func(st file.State, v file.Viewer) (any, error) {
		return file.AddVersion{Viewer: v, ExpectedVersion: expected, Content: content}, nil
	})
}

// UpdateFile renames, moves (folderID set; a nil *folderID is the root) or changes the visibility
// of a file.
func (h *Handlers) UpdateFile(ctx context.Context, cc Context, id uuid.UUID, expected int64, name *string, folderID **uuid.UUID, visibility *string) (FileResult, error) {
	move := folderID != nil
	return h.changeFile(ctx, cc, id, expected, move, func(st file.State, v file.Viewer) (any, error) {
		ok := true
		if move && *folderID != nil && st.CanRead(v) {
			var err error
			if _, ok, err = h.folderChain(ctx, st.SpaceID, *folderID); err != nil {
				return nil, err
			}
		}
		return file.Update{Viewer: v, ExpectedVersion: expected, Name: name, FolderID: folderID, FolderOK: ok, Visibility: visibility}, nil
	})
}

// DeleteFile deletes a file; its content is deleted afterwards by the blob reaper.
func (h *Handlers) DeleteFile(ctx context.Context, cc Context, id uuid.UUID, expected int64) (FileResult, error) {
	return h.changeFile(ctx, cc, id, expected, false, func(_ file.State, v file.Viewer) (any, error) {
		return file.Delete{Viewer: v, ExpectedVersion: expected}, nil
	})
}

// LinkResult is a new public link; the token is shown once.
type LinkResult struct {
	LinkID    uuid.UUID
	Token     string
	ExpiresAt *time.Time
	Position  eventstore.Position
}

// CreateFileLink makes a public link to a file (256-bit token; its SHA-256 is kept).
// A repeat with the same Idempotency-Key is CodeConflict: the first link stands, but its token was
// shown once and is not kept, so it cannot be answered again.
func (h *Handlers) CreateFileLink(ctx context.Context, cc Context, id uuid.UUID, expiresAt *time.Time) (LinkResult, error) {
	if _, ok, err := h.replay(ctx, cc); err != nil {
		return LinkResult{}, err
	} else if ok {
		return LinkResult{}, domain.Errorf(domain.CodeConflict, "this Idempotency-Key already created a link; its token was shown once and cannot be shown again (list the file's links to see it)")
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return LinkResult{}, err
	}
	token := linkPrefix + base64.RawURLEncoding.EncodeToString(raw)
	linkID := uuid.Must(uuid.NewV7())
	hash := hexSHA256(token)
	res, err := h.changeFileWith(ctx, cc, id, 0, false, func(_ file.State, v file.Viewer) (any, error) {
		return file.CreateLink{Viewer: v, LinkID: linkID, TokenHash: hash, ExpiresAt: expiresAt}, nil
	}, func(req *eventstore.AppendRequest, _ file.State) {
		req.Claim = append(req.Claim, eventstore.Reservation{Scope: LinkScope, Key: hash, StreamID: id})
	})
	if err != nil {
		return LinkResult{}, err
	}
	return LinkResult{LinkID: linkID, Token: token, ExpiresAt: expiresAt, Position: res.Position}, nil
}

// RevokeFileLink revokes a public link.
func (h *Handlers) RevokeFileLink(ctx context.Context, cc Context, id, linkID uuid.UUID) (FileResult, error) {
	return h.changeFileWith(ctx, cc, id, 0, false, func(_ file.State, v file.Viewer) (any, error) {
		return file.RevokeLink{Viewer: v, LinkID: linkID}, nil
	}, func(req *eventstore.AppendRequest, st file.State) {
		for _, l := range st.Links {
			if l.ID == linkID {
				req.Release = append(req.Release, eventstore.Reservation{Scope: LinkScope, Key: l.TokenHash, StreamID: id})
			}
		}
	})
}

// PublicFile resolves a public link token to the file and its current content, if the link is live,
// the file public and the file, its folders and its space all still exist; CodeNotFound otherwise
// (the same answer for every reason).
func (h *Handlers) PublicFile(ctx context.Context, token string) (file.State, file.Content, error) {
	notFound := domain.Errorf(domain.CodeNotFound, "link not found")
	if !strings.HasPrefix(token, linkPrefix) {
		return file.State{}, file.Content{}, notFound
	}
	hash := hexSHA256(token)
	var id uuid.UUID
	err := h.sessions.Pool.QueryRow(ctx, `SELECT stream_id FROM reservations WHERE scope = $1 AND key = $2`, LinkScope, hash).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return file.State{}, file.Content{}, notFound
	}
	if err != nil {
		return file.State{}, file.Content{}, err
	}
	st, err := h.File(ctx, id)
	if err != nil {
		return st, file.Content{}, err
	}
	l, ok := st.Link(hash)
	if !ok || !l.Live(h.now()) || !st.Exists() || st.Visibility != file.Public {
		return st, file.Content{}, notFound
	}
	sp, err := h.Space(ctx, st.SpaceID, 0)
	if err != nil {
		return st, file.Content{}, err
	}
	if !sp.Exists() {
		return st, file.Content{}, notFound
	}
	if _, alive, err := h.folderChain(ctx, st.SpaceID, st.FolderID); err != nil || !alive {
		if err == nil {
			err = notFound
		}
		return st, file.Content{}, err
	}
	return st, st.Current(), nil
}

func (h *Handlers) changeFile(ctx context.Context, cc Context, id uuid.UUID, expected int64, moves bool, command func(file.State, file.Viewer) (any, error)) (FileResult, error) {
	return h.changeFileWith(ctx, cc, id, expected, moves, command, nil)
}

// changeFileWith loads, decides and appends, retrying a lost race without an expected version. A
// move holds the space's folder-tree lock shared, so that it and a folder deletion see each other.
// extra adds reservations to the append.
func (h *Handlers) changeFileWith(ctx context.Context, cc Context, id uuid.UUID, expected int64, moves bool,
	command func(file.State, file.Viewer) (any, error), extra func(*eventstore.AppendRequest, file.State)) (FileResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.fileReplay(ctx, prev, err)
	}
	for attempt := 1; ; attempt++ {
		var res FileResult
		var err error
		once := func(t *txn) error {
			res, err = h.changeFileOnce(ctx, t, cc, id, command, extra)
			return err
		}
		if moves {
			st, lerr := h.File(ctx, id)
			if lerr != nil {
				return FileResult{}, lerr
			}
			err = h.withLock(ctx, treeLock(st.SpaceID), false, once)
		} else {
			err = once(nil)
		}
		if expected == 0 && attempt < 3 && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, err
	}
}

func (h *Handlers) changeFileOnce(ctx context.Context, t *txn, cc Context, id uuid.UUID,
	command func(file.State, file.Viewer) (any, error), extra func(*eventstore.AppendRequest, file.State)) (FileResult, error) {
	st, sp, v, _, err := h.fileFor(ctx, cc.Actor, id)
	if err != nil {
		return FileResult{}, err
	}
	cmd, err := command(st, v)
	if err != nil {
		return FileResult{}, err
	}
	evs, err := file.Decide(st, cmd, h.now())
	if err != nil {
		return FileResult{}, err
	}
	if len(evs) == 0 {
		return FileResult{File: st}, nil
	}
	tenant := sp.Owner()
	req := eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: file.StreamType, StreamID: id, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	}
	if extra != nil {
		extra(&req, st)
	}
	res, prev, err := h.appendIdempotent(ctx, t, cc, id, req)
	return h.fileOutcome(ctx, st, evs, res, prev, err)
}

func (h *Handlers) fileOutcome(ctx context.Context, st file.State, evs []domain.Event, res eventstore.AppendResult, prev *eventstore.IdempotentResult, err error) (FileResult, error) {
	if prev != nil {
		return h.fileReplay(ctx, *prev, nil)
	}
	if err != nil {
		return FileResult{}, err
	}
	for _, e := range evs {
		st = file.Evolve(st, e)
	}
	return FileResult{File: st, Position: res.Position}, nil
}

func (h *Handlers) fileReplay(ctx context.Context, prev eventstore.IdempotentResult, err error) (FileResult, error) {
	if err != nil {
		return FileResult{}, err
	}
	st, _, err := load(ctx, h.store, prev.StreamID, prev.StreamVersion, file.Evolve)
	if err != nil {
		return FileResult{}, fmt.Errorf("replay idempotent result: %w", err)
	}
	return FileResult{File: st, Position: prev.Position}, nil
}

// treeLock names the lock that orders moves in a space's folder tree with folder deletions.
func treeLock(spaceID uuid.UUID) string { return "atlas.folder-tree:" + spaceID.String() }

// CreateFolder creates a folder in a space, at the root or under parentID.
func (h *Handlers) CreateFolder(ctx context.Context, cc Context, spaceID uuid.UUID, parentID *uuid.UUID, name string) (FolderResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.folderReplay(ctx, prev, err)
	}
	sp, v, err := h.FileViewer(ctx, cc.Actor, spaceID)
	if err != nil {
		return FolderResult{}, err
	}
	parentOK := true
	if parentID != nil && v.ReadSpace {
		if _, parentOK, err = h.folderChain(ctx, spaceID, parentID); err != nil {
			return FolderResult{}, err
		}
	}
	id := uuid.Must(uuid.NewV7())
	evs, err := file.DecideFolder(file.Folder{}, file.CreateFolder{FolderID: id, SpaceID: spaceID, ParentID: parentID, ParentOK: parentOK,
		Viewer: v, Name: name}, h.now())
	if err != nil {
		return FolderResult{}, err
	}
	tenant := sp.Owner()
	res, prev, err := h.appendIdempotent(ctx, nil, cc, id, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: file.FolderStreamType, StreamID: id, TenantID: &tenant, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	})
	return h.folderOutcome(ctx, file.Folder{}, evs, res, prev, err)
}

func (h *Handlers) folderOutcome(ctx context.Context, f file.Folder, evs []domain.Event, res eventstore.AppendResult, prev *eventstore.IdempotentResult, err error) (FolderResult, error) {
	if prev != nil {
		return h.folderReplay(ctx, *prev, nil)
	}
	if err != nil {
		return FolderResult{}, err
	}
	for _, e := range evs {
		f = file.EvolveFolder(f, e)
	}
	return FolderResult{Folder: f, Position: res.Position}, nil
}

func (h *Handlers) folderReplay(ctx context.Context, prev eventstore.IdempotentResult, err error) (FolderResult, error) {
	if err != nil {
		return FolderResult{}, err
	}
	f, _, err := load(ctx, h.store, prev.StreamID, prev.StreamVersion, file.EvolveFolder)
	if err != nil {
		return FolderResult{}, fmt.Errorf("replay idempotent result: %w", err)
	}
	return FolderResult{Folder: f, Position: prev.Position}, nil
}

// FolderFor returns a live folder viewer may read (through its space); CodeNotFound otherwise.
func (h *Handlers) FolderFor(ctx context.Context, viewer, id uuid.UUID) (file.Folder, file.Viewer, space.State, error) {
	f, err := h.Folder(ctx, id)
	if err != nil {
		return f, file.Viewer{}, space.State{}, err
	}
	notFound := domain.Errorf(domain.CodeNotFound, "folder not found")
	if !f.Exists() {
		return f, file.Viewer{}, space.State{}, notFound
	}
	sp, v, err := h.FileViewer(ctx, viewer, f.SpaceID)
	if err != nil {
		return f, v, sp, err
	}
	if !v.ReadSpace {
		return f, v, sp, notFound
	}
	if _, ok, err := h.folderChain(ctx, f.SpaceID, &f.ID); err != nil || !ok {
		if err == nil {
			err = notFound
		}
		return f, v, sp, err
	}
	return f, v, sp, nil
}

// UpdateFolder renames a folder or moves it (parentID set; a nil *parentID is the root). A move that
// would put a folder inside itself is CodeInvalid. Moves and deletions of folders hold the space's
// folder-tree lock exclusively, so two moves cannot make a cycle together.
func (h *Handlers) UpdateFolder(ctx context.Context, cc Context, id uuid.UUID, expected int64, name *string, parentID **uuid.UUID) (FolderResult, error) {
	return h.changeFolder(ctx, cc, id, expected, parentID != nil, func(f file.Folder, v file.Viewer) (any, error) {
		c := file.UpdateFolder{Viewer: v, ExpectedVersion: expected, Name: name, ParentID: parentID, ParentOK: true}
		if parentID != nil && *parentID != nil && v.ReadSpace {
			chain, ok, err := h.folderChain(ctx, f.SpaceID, *parentID)
			if err != nil {
				return nil, err
			}
			c.ParentOK = ok
			for _, a := range chain {
				if a == f.ID {
					c.Cycle = true
				}
			}
		}
		return c, nil
	})
}

// DeleteFolder deletes a folder with everything in it; the content of its files is deleted afterwards.
func (h *Handlers) DeleteFolder(ctx context.Context, cc Context, id uuid.UUID, expected int64) (FolderResult, error) {
	return h.changeFolder(ctx, cc, id, expected, true, func(_ file.Folder, v file.Viewer) (any, error) {
		return file.DeleteFolder{Viewer: v, ExpectedVersion: expected}, nil
	})
}

func (h *Handlers) changeFolder(ctx context.Context, cc Context, id uuid.UUID, expected int64, locked bool, command func(file.Folder, file.Viewer) (any, error)) (FolderResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.folderReplay(ctx, prev, err)
	}
	for attempt := 1; ; attempt++ {
		var res FolderResult
		var err error
		once := func(t *txn) error {
			res, err = h.changeFolderOnce(ctx, t, cc, id, command)
			return err
		}
		if locked {
			f, lerr := h.Folder(ctx, id)
			if lerr != nil {
				return FolderResult{}, lerr
			}
			err = h.withLock(ctx, treeLock(f.SpaceID), true, once)
		} else {
			err = once(nil)
		}
		if expected == 0 && attempt < 3 && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, err
	}
}

func (h *Handlers) changeFolderOnce(ctx context.Context, t *txn, cc Context, id uuid.UUID, command func(file.Folder, file.Viewer) (any, error)) (FolderResult, error) {
	f, v, sp, err := h.FolderFor(ctx, cc.Actor, id)
	if err != nil {
		return FolderResult{}, err
	}
	cmd, err := command(f, v)
	if err != nil {
		return FolderResult{}, err
	}
	evs, err := file.DecideFolder(f, cmd, h.now())
	if err != nil || len(evs) == 0 {
		return FolderResult{Folder: f}, err
	}
	tenant := sp.Owner()
	res, prev, err := h.appendIdempotent(ctx, t, cc, id, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: file.FolderStreamType, StreamID: id, TenantID: &tenant, ExpectedVersion: f.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	})
	return h.folderOutcome(ctx, f, evs, res, prev, err)
}
