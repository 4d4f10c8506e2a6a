package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/eventstore"
)

// bulkChunk is how many events a bulk catch-up reads and applies per transaction (Options.BulkChunk),
// and bulkChunkBytes how many bytes of payload a chunk holds at most (Options.BulkChunkBytes): fewer
// events then, when they are large (a chunk is held decoded, another is read meanwhile, and each is
// encoded for COPY).
const (
	bulkChunk      = 20000
	bulkChunkBytes = 64 << 20
	bulkReadPage   = 2000 // events per query of the log
)

// errChunkFull ends the reading of a chunk at bulkChunkBytes.
var errChunkFull = errors.New("chunk full")

// bulkCatchUp brings a consumer group that starts far behind the log (a rebuild, a first build, a
// projector that was stopped) up to date in chunks of bulkChunk events, one transaction each (the
// chunk's writes and the group's checkpoint commit together), using the projector's Bulk for runs of
// bulk events and its handlers for the others, until fewer than half a chunk is left; the watermill
// consumer then goes on from the checkpoint, event by event. A failure rolls the chunk back and
// returns the error; the caller then goes on event by event, where failures are retried and recorded
// one event at a time.
//
// Reading and decoding the next chunk (CPU in this process) overlaps with writing the current one
// (CPU in PostgreSQL): on two cores that is most of the difference. A chunk read ahead is exactly
// what a read from the checkpoint after the current chunk would return, because the log is read only
// below the oldest transaction in progress, where nothing can still appear.
func (rt *Runtime) bulkCatchUp(ctx context.Context, p *Projector, group string, log *slog.Logger) error {
	start, applied := time.Now(), 0
	// A group that never ran has no checkpoint row yet: the start of the log.
	if _, err := rt.pool.Exec(ctx, `INSERT INTO projection_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ($1, 0, '0') ON CONFLICT DO NOTHING`, group); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for ctx.Err() == nil {
		var pos eventstore.Position
		var xid string
		err := rt.pool.QueryRow(ctx, `SELECT coalesce(offset_acked, 0), last_processed_transaction_id::text
			FROM projection_offsets WHERE consumer_group = $1`, group).Scan(&pos.GlobalPosition, &xid)
		if err != nil {
			return fmt.Errorf("read checkpoint: %w", err)
		}
		fmt.Sscan(xid, &pos.TransactionID)
		n, done, err := rt.bulkFrom(ctx, p, group, pos, log)
		applied += n
		switch {
		case errors.Is(err, errMoved):
			continue // another process applied some: read again from where it is
		case err != nil:
			return err
		case done:
			if applied > 0 {
				log.Info("bulk catch-up done", "events", applied, "elapsed", time.Since(start).Round(time.Millisecond))
				// Building the late indexes, if any, ANALYZEs as well.
				built, err := rt.buildLateIndexes(ctx, p, group, log, "the bulk catch-up is done")
				if err != nil {
					return err
				}
				if !built {
					if err := rt.analyze(ctx, p, group); err != nil && ctx.Err() == nil {
						log.Warn("analyze after the bulk catch-up", "error", err)
					}
				}
			}
			return nil
		}
	}
	return ctx.Err()
}

// analyze updates the planner's statistics of the tables group writes (a rebuild's copies, or the
// live tables). Tables filled in bulk have none, or stale ones, until autovacuum gets to them, and a
// rebuild's copies would be swapped in without any: queries planned meanwhile may scan a whole table
// where an index serves.
func (rt *Runtime) analyze(ctx context.Context, p *Projector, group string) error {
	if len(p.Tables) == 0 {
		return nil
	}
	g, err := rt.generation(ctx, rt.pool, p.Name, false)
	if err != nil {
		return err
	}
	schema := "public"
	switch {
	case g.shadowGroup != nil && *g.shadowGroup == group:
		schema = rebuildSchema(p.Name)
	case g.liveGroup != group:
		return nil // retired meanwhile
	}
	var tables []string
	for _, t := range p.Tables {
		tables = append(tables, ident(schema, t))
	}
	_, err = rt.opts.Admin.Exec(ctx, "ANALYZE "+strings.Join(tables, ", "))
	return err
}

// readChunk is a chunk of the log read ahead: the events after position after, up to last, of which
// events are those the projector handles, decoded, in log order.
type readChunk struct {
	after, last eventstore.Position
	read        int  // events read, handled or not
	full        bool // ended at bulkChunkBytes, not at the chunk's length or the log's end
	events      []eventstore.Record
	indexed     bool // holds an event of the projector's IndexedTypes
	err         error
}

// readChunkAfter reads up to a chunk of events after position after and decodes those p handles; it
// skips the others without decoding them.
func (rt *Runtime) readChunkAfter(ctx context.Context, p *Projector, after eventstore.Position) readChunk {
	c := readChunk{after: after, last: after, events: make([]eventstore.Record, 0, rt.opts.BulkChunk)}
	reg := rt.store.Registry()
	size := 0
	each := func(raw *eventstore.RawRecord) error {
		name := reg.CurrentName(raw.Type)
		if p.Handlers[name] == nil && !p.BulkTypes[name] {
			c.last = raw.Position
			return nil
		}
		if size += len(raw.Data); size > rt.opts.BulkChunkBytes && len(c.events) > 0 {
			return errChunkFull // this event starts the next chunk
		}
		c.last = raw.Position
		rec, err := rt.store.Decode(raw)
		if err != nil {
			return err
		}
		c.events = append(c.events, rec)
		c.indexed = c.indexed || p.IndexedTypes[name]
		return nil
	}
	// In pages, so that a chunk cut short by its size leaves little read for nothing (a query's rows
	// are all read, even those after the cut): a first page of bulkReadPage events, then as many as
	// the payload left would hold at the average size so far (for small events, the rest of the chunk).
	for c.read < rt.opts.BulkChunk {
		page := bulkReadPage
		if len(c.events) > 0 {
			page = max(bulkReadPage, (rt.opts.BulkChunkBytes-size)/max(1, size/len(c.events))+1)
		}
		page = min(page, rt.opts.BulkChunk-c.read)
		n, err := rt.store.EachLogRaw(ctx, c.last, page, each)
		c.read += n
		if errors.Is(err, errChunkFull) {
			c.read, c.full = c.read-1, true
			break
		}
		if err != nil || n < page {
			c.err = err
			break // the log's end, for now
		}
	}
	return c
}

// end says whether c is the end of the bulk catch-up: less than half a chunk was left in the log.
func (c readChunk) end(chunk int) bool { return !c.full && c.read < chunk/2 }

// bulkFrom applies chunks from pos on while a reader goroutine reads the next one, and returns how
// many events it applied and whether the log is (nearly) caught up.
func (rt *Runtime) bulkFrom(ctx context.Context, p *Projector, group string, pos eventstore.Position, log *slog.Logger) (applied int, done bool, err error) {
	rctx, cancel := context.WithCancel(ctx)
	chunks := make(chan readChunk, 1)
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		defer close(chunks)
		for after := pos; ; {
			c := rt.readChunkAfter(rctx, p, after)
			select {
			case chunks <- c:
			case <-rctx.Done():
				return
			}
			if c.err != nil || c.end(rt.opts.BulkChunk) {
				return
			}
			after = c.last
		}
	}()
	defer func() { cancel(); reader.Wait() }()
	indexesBuilt := false
	for c := range chunks {
		switch {
		case c.err != nil:
			return applied, false, c.err
		case c.end(rt.opts.BulkChunk):
			return applied, true, nil
		}
		if c.indexed && !indexesBuilt {
			if _, err := rt.buildLateIndexes(ctx, p, group, log, "the next chunk has events that need them"); err != nil {
				return applied, false, err
			}
			indexesBuilt = true
		}
		if err := rt.applyChunk(ctx, p, group, c); err != nil {
			return applied, false, err
		}
		applied += c.read
	}
	return applied, false, ctx.Err()
}

// applyChunk applies a chunk in one transaction with the group's checkpoint, which must still be
// where the chunk starts (errMoved otherwise): consecutive bulk events together with Bulk, any other
// event with its handler, in log order.
func (rt *Runtime) applyChunk(ctx context.Context, p *Projector, group string, c readChunk) error {
	return pgx.BeginFunc(ctx, rt.pool, func(tx pgx.Tx) error {
		// The checkpoint row, locked: no consumer of this group in any process is in a batch, and
		// none starts one until this chunk commits.
		var now eventstore.Position
		var xid string
		if err := tx.QueryRow(ctx, `SELECT coalesce(offset_acked, 0), last_processed_transaction_id::text
			FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE`, group).Scan(&now.GlobalPosition, &xid); err != nil {
			return err
		}
		fmt.Sscan(xid, &now.TransactionID)
		if now != c.after {
			return errMoved
		}
		cons := &consumer{p: p, group: group}
		if err := rt.enter(ctx, cons, tx); err != nil {
			return err
		}
		// The tables as the search path resolves them: a rebuild's copies, or the live ones.
		var canCopy bool
		if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_class
			WHERE oid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t) AND relrowsecurity)`, p.Tables).Scan(&canCopy); err != nil {
			return err
		}
		if cons.shadow {
			// A rebuild's copies, which nothing reads: the commit need not wait for the disk. A crash
			// of PostgreSQL loses the last chunks' rows and checkpoint together, and they are redone.
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
		}
		// A run of bulk events is a slice of the chunk's, from run to the next other event.
		run := -1
		flush := func(end int) error {
			if run < 0 {
				return nil
			}
			err := p.Bulk(ctx, tx, c.events[run:end:end], canCopy)
			run = -1
			return err
		}
		for i, e := range c.events {
			if p.BulkTypes[e.Name] {
				if run < 0 {
					run = i
				}
				continue
			}
			if err := flush(i); err != nil {
				return err
			}
			if err := callHandler(ctx, p.Handlers[e.Name], tx, e); err != nil {
				return &handlerError{position: e.Position.GlobalPosition, eventType: e.Name, err: err}
			}
		}
		if err := flush(len(c.events)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projection_offsets SET offset_acked = $2, last_processed_transaction_id = $3::text::xid8
			WHERE consumer_group = $1`, group, c.last.GlobalPosition, fmt.Sprint(c.last.TransactionID))
		return err
	})
}

// errMoved: the checkpoint moved between reading it and locking it.
var errMoved = errors.New("checkpoint moved")
