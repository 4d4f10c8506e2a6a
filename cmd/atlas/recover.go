package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/atlas-workspace/atlas/eventstore"
)

// clogSegment is how many transaction ids one pg_xact segment file covers. A next transaction id at
// the start of a segment is one PostgreSQL can continue from after pg_resetwal.
const clogSegment = 1 << 20

// recoverCmd runs `atlas recover [--quiet]` on a database restored from a backup, before serving it:
//
//  1. it checks transaction-id continuity: new transactions must get ids above every restored event's,
//     or projectors would deliver new events before old ones and skip them. When they would not (a
//     restore into another PostgreSQL cluster), it stops and prints the pg_resetwal command that
//     fixes it;
//  2. it verifies the restored log (hash chains and seals), and stops if a link is broken;
//  3. it rebuilds every read model from the log, each under a new consumer group, so no restored
//     checkpoint is used again;
//  4. it rebuilds the search index from the log.
func recoverCmd(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	quiet, err := quietFlag("recover", args)
	if err != nil {
		return err
	}
	logger := warnLogger(stderr)
	app, err := Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer app.Close()

	// 1. Transaction-id continuity.
	var next, maxRestored uint64
	if err := app.OwnerPool.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::numeric,
		coalesce((SELECT max(transaction_id) FROM events)::text::numeric, 0)`).Scan(&next, &maxRestored); err != nil {
		return fmt.Errorf("check transaction ids: %w", err)
	}
	if next <= maxRestored {
		want := (maxRestored/clogSegment + 2) * clogSegment
		return fmt.Errorf("this PostgreSQL cluster would give new transactions ids (next %d) at or below the restored events' (up to %d): "+
			"projectors would miss new events. Stop PostgreSQL and run, as its owner, "+
			"`pg_resetwal -e %d -x %d <data directory>`, start it, and run `atlas recover` again (docs/operations.md, Backup and restore)",
			next, maxRestored, want>>32, want&0xffffffff)
	}
	fmt.Fprintf(stdout, "transaction ids: next %d is above every restored event's (up to %d)\n", next, maxRestored)

	// 2. The restored log verifies.
	rep, err := eventstore.VerifyWith(ctx, app.OwnerPool, eventstore.VerifyOptions{})
	if err != nil {
		return err
	}
	if !rep.OK {
		return brokenLog{first: *rep.FirstBroken}
	}
	fmt.Fprintf(stdout, "the restored log is intact: %d events in %d streams, %d seals\n", rep.CheckedEvents, rep.CheckedStreams, rep.CheckedSeals)

	// 3. Every read model, from the log, under new consumer groups.
	start := time.Now()
	for _, name := range app.Runtime.Names() {
		if err := rebuild(ctx, app, name, true, quiet, stderr, stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "rebuilt every read model in %s\n", time.Since(start).Round(time.Millisecond))

	// 4. The search index.
	return indexAll(ctx, app, quiet, stdout, stderr)
}

// indexAll indexes until no search work item is left, with a progress bar.
func indexAll(ctx context.Context, app *App, quiet bool, stdout, stderr io.Writer) error {
	total, err := app.Indexer.Pending(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "indexing %d documents into %s\n", total, app.Indexer.Index.Class())
	bar := progressbar.NewOptions64(int64(max(total, 1)), progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("index"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("docs"),
		progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetVisibility(!quiet), progressbar.OptionFullWidth())
	start := time.Now()
	for {
		if _, err := app.Indexer.IndexOnce(ctx); err != nil {
			app.Log.Warn("indexing", "error", err)
		}
		left, err := app.Indexer.Pending(ctx)
		if err != nil {
			return err
		}
		_ = bar.Set64(int64(total - left))
		if left == 0 {
			_ = bar.Finish()
			fmt.Fprintf(stdout, "\nreindexed %d documents in %s\n", total, time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reindex interrupted with %d documents left; run it again", left)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
