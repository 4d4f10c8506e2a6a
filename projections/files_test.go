package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"gocloud.dev/blob/memblob"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// TestFilesArrivingInDeletedFoldersAreDeletedOnArrival appends what commands racing a folder's
// deletion could leave after it in the log: an upload into it, a new folder under it, a live file and
// a live folder moved into it, a new version of a file that was in it. None of it is projected, and
// every version's content is queued for deletion; what stays outside is untouched.
func TestFilesArrivingInDeletedFoldersAreDeletedOnArrival(t *testing.T) {
	e := newEnv(t)
	reg := e.store.Registry()
	for _, register := range []func(*eventstore.Registry){
		eventstore.Register[file.FolderCreated], eventstore.Register[file.FolderMoved], eventstore.Register[file.FolderDeleted],
		eventstore.Register[file.Uploaded], eventstore.Register[file.VersionAdded], eventstore.Register[file.Moved],
		eventstore.Register[space.Deleted],
	} {
		register(reg)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	owner, sp := uuid.New(), uuid.New()
	versions := map[uuid.UUID]int64{}
	var last eventstore.Position
	put := func(typ string, stream uuid.UUID, ev domain.Event) {
		t.Helper()
		res, err := e.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			StreamType: typ, StreamID: stream, TenantID: &owner, ExpectedVersion: versions[stream], Events: []domain.Event{ev}}}})
		if err != nil {
			t.Fatal(err)
		}
		versions[stream]++
		last = res.Position
	}
	content := func(key string, v int64) file.Content {
		return file.Content{Version: v, BlobKey: key, Size: 1, SHA256: "x", ContentType: "text/plain", UploadedBy: owner, UploadedAt: now}
	}
	dead, outside, movedFolder := uuid.New(), uuid.New(), uuid.New()
	inDead, movedFile, keptFile, lateFile := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	put(file.FolderStreamType, dead, file.FolderCreated{FolderID: dead, SpaceID: sp, Name: "dead", CreatedAt: now})
	put(file.FolderStreamType, outside, file.FolderCreated{FolderID: outside, SpaceID: sp, Name: "outside", CreatedAt: now})
	put(file.FolderStreamType, movedFolder, file.FolderCreated{FolderID: movedFolder, SpaceID: sp, Name: "moved", CreatedAt: now})
	put(file.StreamType, inDead, file.Uploaded{FileID: inDead, SpaceID: sp, FolderID: &dead, Name: "in", Visibility: "space", Content: content("blobs/in-1", 1)})
	put(file.StreamType, movedFile, file.Uploaded{FileID: movedFile, SpaceID: sp, FolderID: &outside, Name: "m", Visibility: "space", Content: content("blobs/moved-1", 1)})
	put(file.StreamType, keptFile, file.Uploaded{FileID: keptFile, SpaceID: sp, FolderID: &outside, Name: "k", Visibility: "space", Content: content("blobs/kept-1", 1)})
	put(file.FolderStreamType, dead, file.FolderDeleted{FolderID: dead, DeletedAt: now})
	// After the deletion, in log order:
	put(file.StreamType, inDead, file.VersionAdded{FileID: inDead, Content: content("blobs/in-2", 2)})
	put(file.StreamType, lateFile, file.Uploaded{FileID: lateFile, SpaceID: sp, FolderID: &dead, Name: "late", Visibility: "space", Content: content("blobs/late-1", 1)})
	lateFolder := uuid.New()
	put(file.FolderStreamType, lateFolder, file.FolderCreated{FolderID: lateFolder, SpaceID: sp, ParentID: &dead, Name: "late", CreatedAt: now})
	put(file.StreamType, movedFile, file.Moved{FileID: movedFile, FolderID: &dead, MovedAt: now})
	put(file.FolderStreamType, movedFolder, file.FolderMoved{FolderID: movedFolder, ParentID: &dead, MovedAt: now})

	rt, _ := start(t, e, projections.Options{}, projections.Files())
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rt.WaitFor(wctx, last, projections.FilesProjector); err != nil {
		t.Fatal(err)
	}
	rows, err := e.pool.Query(ctx, `SELECT blob_key FROM blob_deletions ORDER BY blob_key`)
	if err != nil {
		t.Fatal(err)
	}
	var queued []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, k)
	}
	want := []string{"blobs/in-1", "blobs/in-2", "blobs/late-1", "blobs/moved-1"}
	if len(queued) != len(want) {
		t.Fatalf("queued %v, want %v", queued, want)
	}
	for i := range want {
		if queued[i] != want[i] {
			t.Fatalf("queued %v, want %v", queued, want)
		}
	}
	var files, folders int
	if err := e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM folders)`).Scan(&files, &folders); err != nil {
		t.Fatal(err)
	}
	if files != 1 || folders != 1 { // the kept file, in the folder outside
		t.Fatalf("%d files and %d folders left, want 1 and 1", files, folders)
	}
}

// TestOrphanSweepWaitsForALiveFilesProjector: while the files projector rebuilds, the sweep deletes
// nothing, even content that no reference protects.
func TestOrphanSweepWaitsForALiveFilesProjector(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	bucket := memblob.OpenBucket(nil)
	defer bucket.Close()
	if err := bucket.WriteAll(ctx, "blobs/orphan", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	rt := projections.NewRuntime(e.pool, e.store, e.signal, quietLog(), projections.Options{}, projections.Files())
	if _, err := rt.StartRebuild(ctx, projections.FilesProjector); err != nil {
		t.Fatal(err)
	}
	r := &projections.BlobReaper{Pool: e.pool, Bucket: bucket, Runtime: rt, Prefix: "blobs/", Log: quietLog()}
	if n, err := r.SweepOrphans(ctx, time.Nanosecond); err != nil || n != 0 {
		t.Fatalf("during a rebuild the sweep deleted %d (%v)", n, err)
	}
	if !exists(t, bucket, "blobs/orphan") {
		t.Fatal("the sweep deleted content while the files projector was rebuilding")
	}
}
