package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// BlobReaper deletes file content from the bucket: the work items the files projector leaves in
// blob_deletions (content of deleted files, folders and spaces), and orphans, objects that no event
// references (an upload whose event was never appended), once they are older than a grace period.
//
// Items are claimed with a lease in a short transaction and deleted outside it, so no transaction
// stays open (holding back the projectors' snapshot horizon) while the bucket is slow; an item whose
// process died is claimed again when its lease ends. Deleting is idempotent: an object already gone
// counts as deleted.
type BlobReaper struct {
	Pool    *pgxpool.Pool // as the projector role
	Bucket  *blob.Bucket
	Runtime *Runtime // for the files projector's lag, which guards the orphan sweep
	Prefix  string   // where content lives in the bucket (the sweep looks only there)
	Log     *slog.Logger
	Batch   int           // items per claim (default 100)
	Lease   time.Duration // how long a claim lasts (default 1 min)
	Poll    time.Duration // wait between empty claims (default 1 s)
	// OnDelete, if set, is called after each object is deleted (tests use it to stop mid-batch).
	OnDelete func(key string)
}

func (r *BlobReaper) defaults() {
	if r.Batch <= 0 {
		r.Batch = 100
	}
	if r.Lease <= 0 {
		r.Lease = time.Minute
	}
	if r.Poll <= 0 {
		r.Poll = time.Second
	}
}

// Run reaps until ctx ends, and sweeps orphans older than grace every sweepEvery (not at all when
// sweepEvery is 0).
func (r *BlobReaper) Run(ctx context.Context, grace, sweepEvery time.Duration) {
	r.defaults()
	nextSweep := time.Now().Add(sweepEvery)
	for ctx.Err() == nil {
		n, err := r.ReapOnce(ctx)
		if err != nil && ctx.Err() == nil {
			r.Log.Warn("blob reaper", "error", err)
		}
		if sweepEvery > 0 && time.Now().After(nextSweep) {
			nextSweep = time.Now().Add(sweepEvery)
			if swept, err := r.SweepOrphans(ctx, grace); err != nil && ctx.Err() == nil {
				r.Log.Warn("orphan sweep", "error", err)
			} else if swept > 0 {
				r.Log.Info("orphan sweep", "deleted", swept)
			}
		}
		if n == r.Batch && err == nil {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
		case <-time.After(r.Poll):
		}
	}
}

// ReapOnce claims up to Batch due items, deletes their objects and then the items; it returns how
// many objects it deleted. A failed deletion is retried later with exponential backoff (from 1 s to
// 1 h), with the error recorded on the item.
func (r *BlobReaper) ReapOnce(ctx context.Context) (int, error) {
	r.defaults()
	rows, err := r.Pool.Query(ctx, `UPDATE blob_deletions SET next_attempt_at = now() + $2::interval, attempts = attempts + 1
		WHERE blob_key IN (SELECT blob_key FROM blob_deletions WHERE next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING blob_key, attempts`, r.Batch, r.Lease.String())
	if err != nil {
		return 0, fmt.Errorf("claim blob deletions: %w", err)
	}
	type item struct {
		key      string
		attempts int
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (item, error) {
		var it item
		return it, row.Scan(&it.key, &it.attempts)
	})
	if err != nil {
		return 0, fmt.Errorf("claim blob deletions: %w", err)
	}
	deleted := 0
	for _, it := range items {
		if ctx.Err() != nil {
			return deleted, ctx.Err()
		}
		if err := r.Bucket.Delete(ctx, it.key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			backoff := time.Duration(1<<min(it.attempts-1, 12)) * time.Second
			if backoff > time.Hour {
				backoff = time.Hour
			}
			if _, uerr := r.Pool.Exec(ctx, `UPDATE blob_deletions SET next_attempt_at = now() + $2::interval, last_error = $3 WHERE blob_key = $1`,
				it.key, backoff.String(), err.Error()); uerr != nil {
				return deleted, errors.Join(err, uerr)
			}
			r.Log.Warn("blob deletion failed; retrying later", "key", it.key, "attempt", it.attempts, "retry_in", backoff, "error", err)
			continue
		}
		if _, err := r.Pool.Exec(ctx, `WITH d AS (DELETE FROM blob_deletions WHERE blob_key = $1)
			DELETE FROM blob_refs WHERE blob_key = $1`, it.key); err != nil {
			return deleted, fmt.Errorf("record blob deletion: %w", err)
		}
		deleted++
		if r.OnDelete != nil {
			r.OnDelete(it.key)
		}
	}
	return deleted, nil
}

// Pending counts the deletions not done yet.
func (r *BlobReaper) Pending(ctx context.Context) (int, error) {
	var n int
	err := r.Pool.QueryRow(ctx, `SELECT count(*) FROM blob_deletions`).Scan(&n)
	return n, err
}

// SweepOrphans deletes objects under Prefix older than grace that no file event references
// (blob_refs). It does nothing, and stops, while the files projector is failed, rebuilding or more
// than grace/2 behind (checked before each batch): an upload's event is recorded after its object, so
// an object older than grace whose event was recorded within grace/2 of it (any upload shorter than
// that) is in blob_refs by then. A rebuild of the projector does not empty blob_refs.
func (r *BlobReaper) SweepOrphans(ctx context.Context, grace time.Duration) (int, error) {
	r.defaults()
	// current says whether the files projector is live and within grace/2 of the log; it is asked
	// before the sweep and again before each batch is deleted.
	current := func() (bool, error) {
		if r.Runtime == nil {
			return true, nil
		}
		p := r.Runtime.Projector(FilesProjector)
		if p == nil {
			return false, errors.New("orphan sweep: no files projector")
		}
		st, err := r.Runtime.status(ctx, p)
		if err != nil {
			return false, err
		}
		if st.Status != "live" || st.LagSeconds > (grace/2).Seconds() {
			r.Log.Warn("orphan sweep skipped: the files projector is not live and current", "status", st.Status, "lag_seconds", st.LagSeconds)
			return false, nil
		}
		return true, nil
	}
	if ok, err := current(); err != nil || !ok {
		return 0, err
	}
	cutoff := time.Now().Add(-grace)
	it := r.Bucket.List(&blob.ListOptions{Prefix: r.Prefix})
	var batch []string
	deleted := 0
	stopped := false
	flush := func() error {
		if len(batch) == 0 || stopped {
			return nil
		}
		if ok, err := current(); err != nil || !ok {
			stopped = true
			return err
		}
		rows, err := r.Pool.Query(ctx, `SELECT k FROM unnest($1::text[]) k WHERE NOT EXISTS (SELECT 1 FROM blob_refs WHERE blob_key = k)`, batch)
		if err != nil {
			return err
		}
		orphans, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, k := range orphans {
			if err := r.Bucket.Delete(ctx, k); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
				return fmt.Errorf("delete orphan %s: %w", k, err)
			}
			deleted++
		}
		batch = batch[:0]
		return nil
	}
	for {
		obj, err := it.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return deleted, fmt.Errorf("list the bucket: %w", err)
		}
		if obj.IsDir || !obj.ModTime.Before(cutoff) {
			continue
		}
		if stopped {
			break
		}
		batch = append(batch, obj.Key)
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return deleted, err
			}
		}
	}
	return deleted, flush()
}
