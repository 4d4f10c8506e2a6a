package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gocloud.dev/blob"

	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/search/chunk"
	"github.com/atlas-workspace/atlas/search/embed"
	"github.com/atlas-workspace/atlas/search/extract"
	"github.com/atlas-workspace/atlas/search/index"
)

// SearchIndexer drains the search projector's work items into the index. For each item it waits
// until the read model the document comes from (notes or files) has applied the item's event, reads
// the document as it is there, and writes it: chunks with overlap, embedded, upserted with
// deterministic ids and the document's version (the index refuses an older version than it holds),
// or deleted when the document is gone. Items are claimed with a lease, retried with backoff while
// Weaviate fails, and removed only once written, so nothing is lost while Weaviate is down.
type SearchIndexer struct {
	Pool     *pgxpool.Pool // as the projector role
	Runtime  *Runtime
	Index    *index.Index
	Embedder embed.Embedder
	Bucket   *blob.Bucket
	Log      *slog.Logger

	Batch     int           // items per claim (default 64)
	Lease     time.Duration // claim length (default 2 min)
	Poll      time.Duration // wait between empty claims (default 500 ms)
	ChunkSize int           // runes per chunk (default 800)
	Overlap   int           // runes shared by neighbouring chunks (default 100)
	MaxText   int           // bytes of a file's text indexed (default 1 MiB)

	wake chan struct{}
}

// Nudge wakes the indexer now instead of at its next poll: the search projector calls it (through
// the runtime's OnBatch) after committing work items.
func (x *SearchIndexer) Nudge() {
	x.init()
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

var wakeInit sync.Mutex

func (x *SearchIndexer) init() {
	wakeInit.Lock()
	if x.wake == nil {
		x.wake = make(chan struct{}, 1)
	}
	wakeInit.Unlock()
}

func (x *SearchIndexer) defaults() {
	if x.Batch <= 0 {
		x.Batch = 64
	}
	if x.Lease <= 0 {
		x.Lease = 2 * time.Minute
	}
	if x.Poll <= 0 {
		x.Poll = 500 * time.Millisecond
	}
	if x.ChunkSize <= 0 {
		x.ChunkSize = 800
	}
	if x.Overlap <= 0 || x.Overlap >= x.ChunkSize {
		x.Overlap = x.ChunkSize / 8
	}
	if x.MaxText <= 0 {
		x.MaxText = 1 << 20
	}
}

// Run indexes until ctx ends. It polls every Poll, and every 20 ms for a second after a Nudge (the
// nudge comes as the projector's batch ends, a moment before its transaction commits).
func (x *SearchIndexer) Run(ctx context.Context) {
	x.defaults()
	x.init()
	var eager time.Time
	for ctx.Err() == nil {
		n, err := x.IndexOnce(ctx)
		if err != nil && ctx.Err() == nil {
			x.Log.Warn("search indexer", "error", err)
		}
		if n > 0 && err == nil {
			continue
		}
		wait := x.Poll
		if time.Now().Before(eager) {
			wait = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-x.wake:
			eager = time.Now().Add(time.Second)
		case <-time.After(wait):
		}
	}
}

type searchItem struct {
	doc      uuid.UUID
	kind     string
	tenant   uuid.UUID
	pos      eventstore.Position
	attempts int
}

// errNotYet postpones an item whose source read model has not applied its event yet.
var errNotYet = errors.New("source read model not there yet")

// errUnreadable marks a document whose text cannot be read (a corrupt PDF): it is indexed by name and
// its state says why.
type errUnreadable struct{ reason string }

func (e errUnreadable) Error() string { return e.reason }

// IndexOnce claims due items and processes them; it returns how many it finished.
func (x *SearchIndexer) IndexOnce(ctx context.Context) (int, error) {
	x.defaults()
	rows, err := x.Pool.Query(ctx, `UPDATE search_work SET next_attempt_at = now() + $2::interval, attempts = attempts + 1
		WHERE doc_id IN (SELECT doc_id FROM search_work WHERE next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING doc_id, kind, tenant_id, position, transaction_id, attempts`, x.Batch, x.Lease.String())
	if err != nil {
		return 0, fmt.Errorf("claim search work: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (searchItem, error) {
		var it searchItem
		var xid int64
		err := row.Scan(&it.doc, &it.kind, &it.tenant, &it.pos.GlobalPosition, &xid, &it.attempts)
		it.pos.TransactionID = uint64(xid)
		return it, err
	})
	if err != nil {
		return 0, fmt.Errorf("claim search work: %w", err)
	}
	done := 0
	var firstErr error
	finish := func(it searchItem, err error) {
		switch {
		case err == nil:
			done++
			_, err = x.Pool.Exec(ctx, `DELETE FROM search_work WHERE doc_id = $1 AND position = $2`, it.doc, it.pos.GlobalPosition)
		case errors.Is(err, errNotYet):
			_, err = x.Pool.Exec(ctx, `UPDATE search_work SET next_attempt_at = now() + interval '50 milliseconds', attempts = attempts - 1
				WHERE doc_id = $1 AND position = $2`, it.doc, it.pos.GlobalPosition)
		default:
			backoff := time.Duration(1<<min(it.attempts-1, 9)) * time.Second // 1 s .. 8.5 min
			x.Log.Warn("search indexing failed; retrying later", "doc_id", it.doc, "kind", it.kind, "attempt", it.attempts, "retry_in", backoff, "error", err)
			if firstErr == nil {
				firstErr = fmt.Errorf("index %s %s: %w", it.kind, it.doc, err)
			}
			_, err = x.Pool.Exec(ctx, `UPDATE search_work SET next_attempt_at = now() + $3::interval, last_error = $4
				WHERE doc_id = $1 AND position = $2`, it.doc, it.pos.GlobalPosition, backoff.String(), err.Error())
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	// Deletions and containers are done one by one; documents to write are gathered and written
	// together: one embedding call and as few Weaviate batches as possible for the whole claim.
	var ready []*prepared
	for _, it := range items {
		p, err := x.process(ctx, it)
		switch {
		case err != nil || p == nil || p.skip:
			finish(it, err)
		default:
			ready = append(ready, p)
		}
	}
	if len(ready) > 0 {
		err := x.writeAll(ctx, ready)
		for _, p := range ready {
			finish(p.it, err)
		}
	}
	return done, firstErr
}

// caughtUp reports whether the named projector has applied pos.
func (x *SearchIndexer) caughtUp(ctx context.Context, pos eventstore.Position, name string) error {
	cp, err := x.Runtime.Checkpoint(ctx, name)
	if err != nil {
		return err
	}
	if cp.Less(pos) {
		return errNotYet
	}
	return nil
}

// prepared is a document read and ready to be written.
type prepared struct {
	it      searchItem
	doc     index.Doc
	text    string
	failure string // why the text could not be read ("" when it could)
	prev    int    // chunks the index holds for it
	skip    bool   // the index already holds this version or a newer one
}

// process does a deletion item at once and returns nil, or reads a document to write and returns it.
func (x *SearchIndexer) process(ctx context.Context, it searchItem) (*prepared, error) {
	tenant := it.tenant.String()
	switch it.kind {
	case "space":
		if err := x.Index.DeleteSpace(ctx, tenant, it.doc); err != nil {
			return nil, err
		}
		_, err := x.Pool.Exec(ctx, `DELETE FROM search_docs WHERE space_id = $1`, it.doc)
		return nil, err
	case "folder":
		// The folder's files are gone from the files read model once it applied the event: drop
		// every indexed file of the tenant that is no longer there.
		if err := x.caughtUp(ctx, it.pos, FilesProjector); err != nil {
			return nil, err
		}
		rows, err := x.Pool.Query(ctx, `SELECT d.doc_id FROM search_docs d
			WHERE d.tenant_id = $1 AND d.kind = 'file' AND NOT EXISTS (SELECT 1 FROM files f WHERE f.id = d.doc_id)`, it.tenant)
		if err != nil {
			return nil, err
		}
		gone, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return nil, err
		}
		for _, id := range gone {
			if err := x.forget(ctx, tenant, id); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case "note":
		if err := x.caughtUp(ctx, it.pos, NotesProjector); err != nil {
			return nil, err
		}
		p := &prepared{it: it, doc: index.Doc{ID: it.doc, Kind: "note"}}
		var body string
		var indexed *int64
		var chunks *int
		err := x.Pool.QueryRow(ctx, `SELECT n.space_id, n.title, n.body, n.version, d.indexed_version, d.chunks
			FROM notes n LEFT JOIN search_docs d ON d.doc_id = n.id WHERE n.id = $1`, it.doc).
			Scan(&p.doc.SpaceID, &p.doc.Title, &body, &p.doc.SourceVersion, &indexed, &chunks)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, x.forget(ctx, tenant, it.doc)
		}
		if err != nil {
			return nil, err
		}
		p.text = p.doc.Title + "\n\n" + body
		p.settle(indexed, chunks)
		return p, nil
	case "chat":
		return x.chatDoc(ctx, it)
	case "file":
		if err := x.caughtUp(ctx, it.pos, FilesProjector); err != nil {
			return nil, err
		}
		p := &prepared{it: it, doc: index.Doc{ID: it.doc, Kind: "file"}}
		var contentType, key string
		var indexed *int64
		var chunks *int
		err := x.Pool.QueryRow(ctx, `SELECT f.space_id, f.name, f.content_type, f.blob_key, f.version, d.indexed_version, d.chunks
			FROM files f LEFT JOIN search_docs d ON d.doc_id = f.id WHERE f.id = $1`, it.doc).
			Scan(&p.doc.SpaceID, &p.doc.Title, &contentType, &key, &p.doc.SourceVersion, &indexed, &chunks)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, x.forget(ctx, tenant, it.doc)
		}
		if err != nil {
			return nil, err
		}
		if p.settle(indexed, chunks); p.skip {
			return p, nil
		}
		text, reason, err := x.fileText(ctx, key, contentType, p.doc.Title)
		if err != nil {
			return nil, err
		}
		p.text, p.failure = p.doc.Title+"\n"+contentType+"\n\n"+text, reason
		return p, nil
	}
	return nil, fmt.Errorf("unknown search work kind %q", it.kind)
}

// chatDoc reads a chat as the chats read model holds it: its title, then the text of its user
// messages and completed replies, in order. A chat that is gone is removed from the index.
func (x *SearchIndexer) chatDoc(ctx context.Context, it searchItem) (*prepared, error) {
	if err := x.caughtUp(ctx, it.pos, ChatsProjector); err != nil {
		return nil, err
	}
	p := &prepared{it: it, doc: index.Doc{ID: it.doc, Kind: "chat"}}
	var indexed *int64
	var chunks *int
	err := x.Pool.QueryRow(ctx, `SELECT c.space_id, c.title, c.version, d.indexed_version, d.chunks
		FROM chats c LEFT JOIN search_docs d ON d.doc_id = c.id WHERE c.id = $1`, it.doc).
		Scan(&p.doc.SpaceID, &p.doc.Title, &p.doc.SourceVersion, &indexed, &chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, x.forget(ctx, it.tenant.String(), it.doc)
	}
	if err != nil {
		return nil, err
	}
	if p.settle(indexed, chunks); p.skip {
		return p, nil
	}
	rows, err := x.Pool.Query(ctx, `SELECT m.role, coalesce(string_agg(part->>'text', '' ORDER BY ord), '')
		FROM chat_messages m CROSS JOIN LATERAL jsonb_array_elements(m.parts) WITH ORDINALITY AS e(part, ord)
		WHERE m.chat_id = $1 AND m.status = 'complete' AND part->>'type' = 'text'
		GROUP BY m.id, m.seq, m.role ORDER BY m.seq`, it.doc)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(p.doc.Title)
	for rows.Next() {
		var role, text string
		if err := rows.Scan(&role, &text); err != nil {
			rows.Close()
			return nil, err
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		b.WriteString("\n\n" + role + ": " + text)
		if b.Len() > x.MaxText {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	p.text = b.String()
	if len(p.text) > x.MaxText {
		p.text = strings.ToValidUTF8(p.text[:x.MaxText], "")
	}
	return p, nil
}

// settle records what the index holds for the document and whether it is newer than this version
// (then there is nothing to write: a late retry must not bring back older text).
func (p *prepared) settle(indexed *int64, chunks *int) {
	if chunks != nil {
		p.prev = *chunks
	}
	p.skip = indexed != nil && *indexed > p.doc.SourceVersion
}

// fileText extracts a file's text. A type it does not read gives "" (the file is indexed by name and
// metadata); content that cannot be read gives "" and the reason, which the document's state shows.
func (x *SearchIndexer) fileText(ctx context.Context, key, contentType, name string) (string, string, error) {
	r, err := x.Bucket.NewReader(ctx, key, nil)
	if err != nil {
		return "", "", fmt.Errorf("open content %s: %w", key, err)
	}
	defer r.Close()
	text, ok, err := extract.Text(ctx, r, contentType, name, x.MaxText)
	switch {
	case ctx.Err() != nil:
		return "", "", ctx.Err()
	case err != nil:
		return "", "text could not be extracted: " + err.Error(), nil
	case !ok:
		return "", "", nil
	}
	return text, "", nil
}

// writeAll chunks and embeds the documents (one embedding call for all their chunks), writes them
// with as few Weaviate batches as it can, and records each one's state.
func (x *SearchIndexer) writeAll(ctx context.Context, ps []*prepared) error {
	var texts []string
	for _, p := range ps {
		parts := chunk.Split(p.text, x.ChunkSize, x.Overlap)
		if len(parts) == 0 {
			parts = []chunk.Chunk{{Text: p.doc.Title}}
		}
		p.doc.Chunks = make([]index.Chunk, len(parts))
		for i, c := range parts {
			p.doc.Chunks[i].Text = c.Text
			texts = append(texts, c.Text)
		}
	}
	vectors, err := x.Embedder.Embed(ctx, texts)
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	if len(vectors) != len(texts) {
		return fmt.Errorf("embed: %d vectors for %d texts", len(vectors), len(texts))
	}
	writes := make([]index.Write, len(ps))
	n := 0
	for i, p := range ps {
		for j := range p.doc.Chunks {
			p.doc.Chunks[j].Vector = vectors[n]
			n++
		}
		writes[i] = index.Write{Tenant: p.it.tenant.String(), Doc: p.doc, PrevChunks: p.prev}
	}
	if err := x.Index.UpsertMany(ctx, writes); err != nil {
		return err
	}
	for _, p := range ps {
		state, reason := "indexed", (*string)(nil)
		if p.failure != "" {
			state, reason = "failed", &p.failure
		}
		if _, err := x.Pool.Exec(ctx, `UPDATE search_docs SET state = $2, reason = $3, indexed_version = $4, chunks = $5, updated_at = now()
			WHERE doc_id = $1`, p.doc.ID, state, reason, p.doc.SourceVersion, len(p.doc.Chunks)); err != nil {
			return err
		}
	}
	return nil
}

// forget removes a document that is gone from the index and from search_docs.
func (x *SearchIndexer) forget(ctx context.Context, tenant string, doc uuid.UUID) error {
	if err := x.Index.DeleteDoc(ctx, tenant, doc); err != nil {
		return err
	}
	_, err := x.Pool.Exec(ctx, `DELETE FROM search_docs WHERE doc_id = $1`, doc)
	return err
}

// Pending counts the work items not done yet.
func (x *SearchIndexer) Pending(ctx context.Context) (int, error) {
	var n int
	err := x.Pool.QueryRow(ctx, `SELECT count(*) FROM search_work`).Scan(&n)
	return n, err
}
