package workers

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"gocloud.dev/blob"

	"github.com/atlas-workspace/atlas/projections"
)

// ExportKind is the name of the space export kind.
const ExportKind = "space.export"

// ArtifactKey is where the artifact of attempt `attempt` of run `run` of a task is stored in the
// bucket. The key is derived, not stored, so the artifact endpoint needs only the task's state.
func ArtifactKey(taskID uuid.UUID, run, attempt int) string {
	return fmt.Sprintf("exports/%s/%d-%d.zip", taskID, run, attempt)
}

// ExportResult is the result of a space export.
type ExportResult struct {
	ArtifactURL  string `json:"artifact_url"`
	ArtifactName string `json:"artifact_name"`
	Size         int64  `json:"size"`
	Notes        int    `json:"notes"`
	Files        int    `json:"files"`
	// PrivateFiles counts files only the creator may read (visibility private); an export holding any
	// is downloadable by its creator only.
	PrivateFiles int `json:"private_files"`
}

// Export zips a space's notes (as Markdown, under notes/) and the current version of its files (under
// files/, in their folders) into the bucket, reading everything as the task's creator. The zip is
// streamed from the content to the bucket in constant memory.
func Export(d Deps) *Kind {
	k := &Kind{
		Name:        ExportKind,
		Description: "a zip of the space's notes (Markdown) and files (current versions), downloadable from the task",
		Schema: `{
			"type": "object",
			"additionalProperties": false,
			"properties": {
				"include_notes": {"type": "boolean"},
				"include_files": {"type": "boolean"}
			}
		}`,
		MaxAttempts: 3,
		Timeout:     time.Hour,
	}
	k.Run = func(ctx context.Context, t *Run) (json.RawMessage, error) {
		in := struct {
			Notes *bool `json:"include_notes"`
			Files *bool `json:"include_files"`
		}{}
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return nil, Permanent(err)
		}
		if err := readableSpace(ctx, d.Commands, t); err != nil {
			return nil, err
		}
		res := ExportResult{ArtifactURL: "/api/v1/tasks/" + t.TaskID.String() + "/artifact"}
		sp, err := d.Queries.Space(ctx, t.Creator, t.SpaceID)
		if err != nil {
			return nil, err
		}
		res.ArtifactName = sp.Slug + "-export.zip"
		key := ArtifactKey(t.TaskID, t.RunNumber, t.Attempt)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		bw, err := d.Bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: "application/zip",
			ContentDisposition: `attachment; filename="` + res.ArtifactName + `"`})
		if err != nil {
			return nil, fmt.Errorf("open the export in the bucket: %w", err)
		}
		cw := &countingWriter{w: bw}
		zw := zip.NewWriter(cw)
		names := map[string]int{}
		err = func() error {
			if in.Notes == nil || *in.Notes {
				if err := exportNotes(ctx, d, t, zw, names, &res); err != nil {
					return err
				}
			}
			if in.Files == nil || *in.Files {
				if err := exportFiles(ctx, d, t, zw, names, &res); err != nil {
					return err
				}
			}
			return zw.Close()
		}()
		if err != nil {
			cancel() // the bucket drops a write whose context ended
			_ = bw.Close()
			return nil, err
		}
		if err := bw.Close(); err != nil {
			return nil, fmt.Errorf("store the export: %w", err)
		}
		res.Size = cw.n
		t.Printf("exported %d notes and %d files (%d bytes)\n", res.Notes, res.Files, res.Size)
		t.Printf("download: %s\n", res.ArtifactURL)
		return json.Marshal(res)
	}
	k.Discard = func(ctx context.Context, t *Run, _ json.RawMessage) {
		_ = d.Bucket.Delete(ctx, ArtifactKey(t.TaskID, t.RunNumber, t.Attempt))
	}
	return k
}

func exportNotes(ctx context.Context, d Deps, t *Run, zw *zip.Writer, names map[string]int, res *ExportResult) error {
	cursor := ""
	for {
		page, err := d.Queries.NotesOf(ctx, t.Creator, t.SpaceID, cursor, 200)
		if err != nil {
			return fmt.Errorf("list notes: %w", err)
		}
		for _, item := range page.Items {
			n, err := d.Queries.Note(ctx, t.Creator, item.ID)
			if err != nil {
				continue // deleted meanwhile
			}
			body := ""
			if n.Body != nil {
				body = *n.Body
			}
			w, err := zw.CreateHeader(&zip.FileHeader{Name: unique(names, "notes/"+safeName(n.Title, "note")+".md"),
				Method: zip.Deflate, Modified: n.UpdatedAt})
			if err != nil {
				return err
			}
			if _, err := io.WriteString(w, "# "+n.Title+"\n\n"+body); err != nil {
				return err
			}
			res.Notes++
		}
		if len(page.Items) > 0 {
			t.Printf("notes: %d\n", res.Notes)
		}
		if page.NextCursor == nil {
			return nil
		}
		cursor = *page.NextCursor
	}
}

func exportFiles(ctx context.Context, d Deps, t *Run, zw *zip.Writer, names map[string]int, res *ExportResult) error {
	dirs, err := folderPaths(ctx, d, t)
	if err != nil {
		return err
	}
	cursor := ""
	for {
		page, err := d.Queries.FilesOf(ctx, t.Creator, t.SpaceID, projections.FileFilter{}, cursor, 200)
		if err != nil {
			return fmt.Errorf("list files: %w", err)
		}
		for _, f := range page.Items {
			_, v, err := d.Queries.FileContent(ctx, t.Creator, f.ID, 0)
			if err != nil {
				continue // deleted meanwhile
			}
			fv := f // the listing has the folder; the content query the current version
			dir := "files"
			if fv.FolderID != nil {
				if p, ok := dirs[*fv.FolderID]; ok {
					dir = path.Join(dir, p)
				}
			}
			w, err := zw.CreateHeader(&zip.FileHeader{Name: unique(names, path.Join(dir, safeName(fv.Name, "file"))),
				Method: zip.Deflate, Modified: v.UploadedAt})
			if err != nil {
				return err
			}
			r, err := d.Bucket.NewReader(ctx, v.BlobKey, nil)
			if err != nil {
				return fmt.Errorf("read %s: %w", fv.Name, err)
			}
			_, err = io.Copy(w, r)
			r.Close()
			if err != nil {
				return fmt.Errorf("copy %s: %w", fv.Name, err)
			}
			res.Files++
			if fv.Visibility == "private" {
				res.PrivateFiles++
			}
		}
		if len(page.Items) > 0 {
			t.Printf("files: %d\n", res.Files)
		}
		if page.NextCursor == nil {
			return nil
		}
		cursor = *page.NextCursor
	}
}

// folderPaths maps each folder of the space the creator sees to its path ("a/b").
func folderPaths(ctx context.Context, d Deps, t *Run) (map[uuid.UUID]string, error) {
	paths := map[uuid.UUID]string{}
	type level struct {
		parent *uuid.UUID
		prefix string
	}
	queue := []level{{nil, ""}}
	for len(queue) > 0 {
		l := queue[0]
		queue = queue[1:]
		cursor := ""
		for {
			page, err := d.Queries.FoldersOf(ctx, t.Creator, t.SpaceID, l.parent, cursor, 200)
			if err != nil {
				return nil, fmt.Errorf("list folders: %w", err)
			}
			for _, f := range page.Items {
				p := path.Join(l.prefix, safeName(f.Name, "folder"))
				paths[f.ID] = p
				id := f.ID
				queue = append(queue, level{&id, p})
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
	}
	return paths, nil
}

// safeName makes a name safe as one path element of a zip entry.
func safeName(name, fallback string) string {
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, strings.TrimSpace(name))
	if name == "" || name == "." || name == ".." {
		return fallback
	}
	return name
}

// unique returns name, or name with " (n)" before its extension when it was used already.
func unique(names map[string]int, name string) string {
	n := names[name]
	names[name] = n + 1
	if n == 0 {
		return name
	}
	ext := path.Ext(name)
	alt := fmt.Sprintf("%s (%d)%s", strings.TrimSuffix(name, ext), n+1, ext)
	return unique(names, alt)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrNoArtifact: the task has no artifact (not an export, or not completed).
var ErrNoArtifact = errors.New("the task has no artifact")
