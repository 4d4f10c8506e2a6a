package blobtest_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob" // s3:// buckets
	"gocloud.dev/gcerrors"

	"github.com/atlas-workspace/atlas/internal/blobtest"
)

func TestMain(m *testing.M) { os.Exit(blobtest.Run(m)) }

func open(t *testing.T, url string) *blob.Bucket {
	t.Helper()
	b, err := blob.OpenBucket(context.Background(), url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestS3RoundTrip writes, reads, lists and deletes an object through gocloud's s3blob driver on
// the versitygw that S3URL starts.
func TestS3RoundTrip(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := open(t, blobtest.S3URL(t))

	// Several MiB, written in uneven pieces so that the writer streams it in more than one part.
	data := make([]byte, 7<<20+12345)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(data)
	const key = "dir/object.bin"
	w, err := b.NewWriter(ctx, key, &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1<<20+17)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatalf("write: %v", err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close writer: %v", err)
	}

	attrs, err := b.Attributes(ctx, key)
	if err != nil {
		t.Fatalf("attributes: %v", err)
	}
	if attrs.Size != int64(len(data)) || attrs.ContentType != "application/octet-stream" {
		t.Fatalf("attributes: size %d, content type %q; want %d, application/octet-stream", attrs.Size, attrs.ContentType, len(data))
	}

	got, err := b.ReadAll(ctx, key)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes that differ from the %d written", len(got), len(data))
	}

	const off, length = 3<<20 + 5, 1<<20 + 3
	r, err := b.NewRangeReader(ctx, key, off, length, nil)
	if err != nil {
		t.Fatalf("range reader: %v", err)
	}
	part, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatalf("range read: %v", err)
	}
	if !bytes.Equal(part, data[off:off+length]) {
		t.Fatalf("range read of %d bytes at %d: got %d bytes that differ", length, off, len(part))
	}

	var keys []string
	it := b.List(&blob.ListOptions{Prefix: "dir/"})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		keys = append(keys, obj.Key)
		if obj.Key == key && obj.Size != int64(len(data)) {
			t.Errorf("list: %s has size %d, want %d", key, obj.Size, len(data))
		}
	}
	if len(keys) != 1 || keys[0] != key {
		t.Fatalf("list dir/: %v, want [%s]", keys, key)
	}

	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := b.ReadAll(ctx, key); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("read after delete: %v (code %v), want NotFound", err, gcerrors.Code(err))
	}
	if _, err := b.Attributes(ctx, key); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("attributes after delete: %v (code %v), want NotFound", err, gcerrors.Code(err))
	}
}

// TestS3URLFreshBucket: each call gives another bucket, empty, on the same server.
func TestS3URLFreshBucket(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u1, u2 := blobtest.S3URL(t), blobtest.S3URL(t)
	if u1 == u2 {
		t.Fatalf("two calls gave the same URL %s", u1)
	}
	if !strings.HasPrefix(u1, "s3://") || !strings.HasPrefix(u2, "s3://") {
		t.Fatalf("not s3:// URLs: %s, %s", u1, u2)
	}
	b1, b2 := open(t, u1), open(t, u2)
	if err := b1.WriteAll(ctx, "only-in-first", []byte("x"), nil); err != nil {
		t.Fatalf("write: %v", err)
	}
	it := b2.List(nil)
	if obj, err := it.Next(ctx); err != io.EOF {
		t.Fatalf("second bucket is not empty: %v, %v", obj, err)
	}
	if ok, err := b2.Exists(ctx, "only-in-first"); err != nil || ok {
		t.Fatalf("second bucket sees the first one's object: exists %v, err %v", ok, err)
	}
	if ok, err := b1.Exists(ctx, "only-in-first"); err != nil || !ok {
		t.Fatalf("first bucket lost its object: exists %v, err %v", ok, err)
	}
}
