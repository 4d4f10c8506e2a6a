package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"

	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/projections"
)

func exists(t *testing.T, b *blob.Bucket, key string) bool {
	t.Helper()
	ok, err := b.Exists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestBlobReaperIsIdempotentAndRecoversClaims: an object already gone (a reaper that died between
// deleting it and recording that) counts as deleted; an item claimed by a reaper that died is
// claimed again when its lease ends; a failing bucket leaves the item for later with the error.
func TestBlobReaperIsIdempotentAndRecoversClaims(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	bucket := memblob.OpenBucket(nil)
	defer bucket.Close()
	keys := []string{"blobs/a", "blobs/b", "blobs/c"}
	for _, k := range keys[:2] { // blobs/c is already gone
		if err := bucket.WriteAll(ctx, k, []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		if _, err := pool.Exec(ctx, `INSERT INTO blob_refs (blob_key, file_id) VALUES ($1, $2)`, k, uuid.New()); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO blob_deletions (blob_key, enqueued_at, next_attempt_at) VALUES ($1, now(), now())`, k); err != nil {
			t.Fatal(err)
		}
	}
	// A reaper claimed blobs/b and died: its lease runs 300 ms more.
	if _, err := pool.Exec(ctx, `UPDATE blob_deletions SET next_attempt_at = now() + interval '300 milliseconds', attempts = 1 WHERE blob_key = 'blobs/b'`); err != nil {
		t.Fatal(err)
	}
	r := &projections.BlobReaper{Pool: pool, Bucket: bucket, Log: quietLog(), Lease: time.Minute}
	n, err := r.ReapOnce(ctx)
	if err != nil || n != 2 {
		t.Fatalf("first pass deleted %d (%v), want 2 (blobs/a, and blobs/c already gone)", n, err)
	}
	if exists(t, bucket, "blobs/a") || !exists(t, bucket, "blobs/b") {
		t.Fatal("the first pass should delete blobs/a and leave the claimed blobs/b")
	}
	eventually(t, 5*time.Second, "the dead claim's lease ends and blobs/b is deleted", func() bool {
		n, err := r.ReapOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	var items, refs int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM blob_deletions), (SELECT count(*) FROM blob_refs)`).Scan(&items, &refs); err != nil || items+refs != 0 {
		t.Fatalf("%d items and %d refs left (%v)", items, refs, err)
	}
	if exists(t, bucket, "blobs/b") {
		t.Fatal("blobs/b is still stored")
	}

	// A bucket that fails: the item stays, with the error and a later attempt.
	broken := memblob.OpenBucket(nil)
	broken.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO blob_deletions (blob_key, enqueued_at, next_attempt_at) VALUES ('blobs/d', now(), now())`); err != nil {
		t.Fatal(err)
	}
	r.Bucket = broken
	if n, err := r.ReapOnce(ctx); err != nil || n != 0 {
		t.Fatalf("with a broken bucket: %d, %v", n, err)
	}
	var attempts int
	var lastErr *string
	var due bool
	if err := pool.QueryRow(ctx, `SELECT attempts, last_error, next_attempt_at <= now() FROM blob_deletions WHERE blob_key = 'blobs/d'`).Scan(&attempts, &lastErr, &due); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || lastErr == nil || due {
		t.Fatalf("after a failure: attempts %d, error %v, due now %v", attempts, lastErr, due)
	}
}

// TestOrphanSweepDeletesOnlyUnreferencedOldContent.
func TestOrphanSweepDeletesOnlyUnreferencedOldContent(t *testing.T) {
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	bucket := memblob.OpenBucket(nil)
	defer bucket.Close()
	for _, k := range []string{"blobs/referenced", "blobs/orphan", "other/not-ours"} {
		if err := bucket.WriteAll(ctx, k, []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO blob_refs (blob_key, file_id) VALUES ('blobs/referenced', $1)`, uuid.New()); err != nil {
		t.Fatal(err)
	}
	r := &projections.BlobReaper{Pool: pool, Bucket: bucket, Prefix: "blobs/", Log: quietLog()}
	if n, err := r.SweepOrphans(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("within the grace period: %d deleted, %v", n, err)
	}
	eventually(t, 5*time.Second, "the orphan is swept once older than the grace period", func() bool {
		n, err := r.SweepOrphans(ctx, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	if _, err := bucket.ReadAll(ctx, "blobs/orphan"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("the orphan is still there: %v", err)
	}
	for _, k := range []string{"blobs/referenced", "other/not-ours"} {
		if !exists(t, bucket, k) {
			t.Fatalf("%s was deleted", k)
		}
	}
}
