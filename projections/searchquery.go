package projections

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/search/embed"
	"github.com/atlas-workspace/atlas/search/index"
)

// Searcher answers search queries: Weaviate finds candidates in the caller's tenants, and the
// permission projection decides, at query time, which of them the caller may read, so a revoked
// access hides results at once. When Weaviate fails, it answers from PostgreSQL by keyword (titles,
// note bodies, file names) and says so.
type Searcher struct {
	Queries  *Queries // as the API role
	Index    *index.Index
	Embedder embed.Embedder
	Log      *slog.Logger
	// Collections, when set, says which collection answers: while another than Index's (built with
	// an earlier embedder) is active, searches go there by keyword (its vectors do not match this
	// embedder) and say so. IndexFor opens a collection by name.
	Collections *SearchCollections
	IndexFor    func(class string) *index.Index
}

// NewSearcher returns a searcher over the API's pool.
func NewSearcher(pool *pgxpool.Pool, idx *index.Index, emb embed.Embedder, log *slog.Logger) *Searcher {
	return &Searcher{Queries: NewQueries(pool), Index: idx, Embedder: emb, Log: log}
}

// SearchRequest is one search.
type SearchRequest struct {
	Viewer  uuid.UUID
	Text    string
	Mode    string // index.Keyword, index.Semantic or index.Hybrid
	SpaceID *uuid.UUID
	OrgID   *uuid.UUID
	Kinds   []string
	Limit   int
	Cursor  string
}

// SearchResult is one document found.
type SearchResult struct {
	Kind    string    `json:"kind"`
	ID      uuid.UUID `json:"id"`
	SpaceID uuid.UUID `json:"space_id"`
	Title   string    `json:"title"`
	Snippet string    `json:"snippet"`
	Score   float64   `json:"score"`
}

// SearchPage is one page of results. Engine is "weaviate", or "postgres" when the index could not be
// reached (Degraded, with the reason): then only keyword matches of titles, note bodies and file
// names are found.
type SearchPage struct {
	Items      []SearchResult `json:"items"`
	NextCursor *string        `json:"next_cursor"`
	Mode       string         `json:"mode"`
	Engine     string         `json:"engine"`
	Degraded   bool           `json:"degraded"`
	Reason     string         `json:"reason,omitempty"`
}

// Search runs req. CodeNotFound when the space or organization filtered on is not one the caller may
// read; CodeBadRequest for a malformed cursor.
func (s *Searcher) Search(ctx context.Context, req SearchRequest) (SearchPage, error) {
	offset := 0
	if req.Cursor != "" {
		n, err := strconv.Atoi(req.Cursor)
		if err != nil || n < 0 || n > 10000 {
			return SearchPage{}, domain.Errorf(domain.CodeBadRequest, "cursor %q is not valid", req.Cursor)
		}
		offset = n
	}
	tenants, err := s.tenants(ctx, req)
	if err != nil {
		return SearchPage{}, err
	}
	page := SearchPage{Items: []SearchResult{}, Mode: req.Mode, Engine: "weaviate"}
	want := offset + req.Limit + 1
	idx := s.Index
	if s.Collections != nil {
		active, err := s.Collections.Active(ctx)
		if err != nil {
			return SearchPage{}, err
		}
		if active != s.Index.Class() {
			idx, req.Mode, page.Mode = s.IndexFor(active), index.Keyword, index.Keyword
			page.Degraded, page.Reason = true, "the search index is being rebuilt for a new embedder; keyword matches until it is complete"
		}
	}
	hits, err := s.candidates(ctx, idx, req, tenants, want*4+20)
	var found []SearchResult
	if err == nil {
		found, err = s.readable(ctx, req.Viewer, hits, req.Text)
	}
	if err != nil {
		if ctx.Err() != nil {
			return SearchPage{}, ctx.Err()
		}
		s.Log.Warn("search: the index failed; answering from PostgreSQL", "error", err)
		page.Engine, page.Degraded, page.Reason = "postgres", true, "the search index is unavailable; keyword matches of titles, note and chat text and file names only"
		if found, err = s.keyword(ctx, req, tenants, want); err != nil {
			return SearchPage{}, err
		}
	}
	if offset < len(found) {
		found = found[offset:]
	} else {
		found = nil
	}
	if len(found) > req.Limit {
		found = found[:req.Limit]
		next := strconv.Itoa(offset + req.Limit)
		page.NextCursor = &next
	}
	page.Items = append(page.Items, found...)
	return page, nil
}

// tenants returns the index tenants to search: the space's owner, the organization, or else the
// caller, their organizations and the owners of spaces shared with them in their own name.
func (s *Searcher) tenants(ctx context.Context, req SearchRequest) ([]string, error) {
	var out []string
	err := s.Queries.tenantTx(ctx, req.Viewer, func(tx pgx.Tx) error {
		var rows pgx.Rows
		var err error
		switch {
		case req.SpaceID != nil:
			rows, err = tx.Query(ctx, `SELECT coalesce(s.org_id, s.owner_user_id) FROM spaces s WHERE s.id = $1 AND `+readableSpace("s.id"),
				*req.SpaceID, req.Viewer, Anyone)
		case req.OrgID != nil:
			rows, err = tx.Query(ctx, `SELECT $1::uuid WHERE EXISTS (SELECT 1 FROM permissions
				WHERE principal_id = $2 AND permission = 'read' AND resource_id = $1)`, *req.OrgID, req.Viewer)
		default:
			rows, err = tx.Query(ctx, `SELECT $1::uuid UNION SELECT org_id FROM org_members WHERE user_id = $1
				UNION SELECT coalesce(s.org_id, s.owner_user_id) FROM permissions p JOIN spaces s ON s.id = p.resource_id
					WHERE p.principal_id = $1 AND p.permission = 'read'`, req.Viewer)
		}
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		for _, id := range ids {
			out = append(out, id.String())
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("search tenants: %w", err)
	}
	if len(out) == 0 {
		if req.SpaceID != nil {
			return nil, domain.Errorf(domain.CodeNotFound, "space not found")
		}
		return nil, domain.Errorf(domain.CodeNotFound, "organization not found")
	}
	return out, nil
}

func (s *Searcher) candidates(ctx context.Context, idx *index.Index, req SearchRequest, tenants []string, limit int) ([]index.Hit, error) {
	q := index.Query{Text: req.Text, Mode: req.Mode, Tenants: tenants, SpaceID: req.SpaceID, Kinds: req.Kinds, Limit: min(limit, 1000)}
	if req.Mode != index.Keyword {
		vs, err := s.Embedder.Embed(ctx, []string{req.Text})
		if err != nil {
			return nil, fmt.Errorf("embed the query: %w", err)
		}
		q.Vector = vs[0]
	}
	return idx.Search(ctx, q)
}

// readable keeps the hits viewer may read now, in order, checked against the permission projection
// in one statement.
func (s *Searcher) readable(ctx context.Context, viewer uuid.UUID, hits []index.Hit, text string) ([]SearchResult, error) {
	if len(hits) == 0 {
		return nil, nil
	}
	ids := make([]uuid.UUID, len(hits))
	for i, h := range hits {
		ids[i] = h.DocID
	}
	ok := map[uuid.UUID]bool{}
	err := s.Queries.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT n.id FROM notes n WHERE n.id = ANY ($1) AND `+readableSpace("n.space_id")+`
			UNION ALL SELECT f.id FROM files f WHERE f.id = ANY ($1) AND `+readableFile+`
			UNION ALL SELECT c.id FROM chats c WHERE c.id = ANY ($1) AND `+readableSpace("c.space_id"), ids, viewer, Anyone)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		for _, id := range found {
			ok[id] = true
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("check search results: %w", err)
	}
	var out []SearchResult
	for _, h := range hits {
		if ok[h.DocID] {
			out = append(out, SearchResult{Kind: h.Kind, ID: h.DocID, SpaceID: h.SpaceID, Title: h.Title, Snippet: Snippet(h.Snippet, text, 200), Score: h.Score})
		}
	}
	return out, nil
}

// keyword is the PostgreSQL fallback: readable notes whose title or text contains the query,
// readable files whose name does, and readable chats whose title or a message's text does, newest
// first.
func (s *Searcher) keyword(ctx context.Context, req SearchRequest, tenants []string, limit int) ([]SearchResult, error) {
	kinds := map[string]bool{}
	for _, k := range req.Kinds {
		kinds[k] = true
	}
	all := len(kinds) == 0
	var out []SearchResult
	tenantIDs := make([]uuid.UUID, 0, len(tenants))
	for _, t := range tenants {
		if id, err := uuid.Parse(t); err == nil {
			tenantIDs = append(tenantIDs, id)
		}
	}
	err := s.Queries.tenantTx(ctx, req.Viewer, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT * FROM (
			SELECT 'note' AS kind, n.id, n.space_id, n.title, n.body AS text FROM notes n
			WHERE $4 AND n.tenant_id = ANY ($5) AND ($6::uuid IS NULL OR n.space_id = $6)
			  AND (strpos(lower(n.title), lower($7)) > 0 OR strpos(lower(n.body), lower($7)) > 0) AND `+readableSpace("n.space_id")+`
			UNION ALL
			SELECT 'file', f.id, f.space_id, f.name, f.name FROM files f
			WHERE $8 AND f.tenant_id = ANY ($5) AND ($6::uuid IS NULL OR f.space_id = $6)
			  AND strpos(lower(f.name), lower($7)) > 0 AND `+readableFile+`
			UNION ALL
			SELECT 'chat', c.id, c.space_id, c.title, coalesce(m.text, c.title) FROM chats c
			LEFT JOIN LATERAL (SELECT e.part->>'text' AS text FROM chat_messages cm, jsonb_array_elements(cm.parts) e(part)
				WHERE cm.chat_id = c.id AND cm.status = 'complete' AND e.part->>'type' = 'text' AND strpos(lower(e.part->>'text'), lower($7)) > 0
				LIMIT 1) m ON true
			WHERE $9 AND c.tenant_id = ANY ($5) AND ($6::uuid IS NULL OR c.space_id = $6)
			  AND (strpos(lower(c.title), lower($7)) > 0 OR m.text IS NOT NULL) AND `+readableSpace("c.space_id")+`) r
			ORDER BY r.id DESC LIMIT $1`, limit, req.Viewer, Anyone, all || kinds["note"], tenantIDs, req.SpaceID, req.Text, all || kinds["file"], all || kinds["chat"])
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r SearchResult
			var text string
			if err := rows.Scan(&r.Kind, &r.ID, &r.SpaceID, &r.Title, &text); err != nil {
				return err
			}
			r.Snippet, r.Score = Snippet(text, req.Text, 200), 1
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("keyword search: %w", err)
	}
	return out, nil
}

// Snippet returns about width runes of text around the first word of query found in it (the start
// of text when none is), on word boundaries, with "…" where it was cut.
func Snippet(text, query string, width int) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) <= width {
		return text
	}
	lower := strings.ToLower(text)
	at := -1
	for _, w := range strings.Fields(strings.ToLower(query)) {
		if i := strings.Index(lower, w); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	runes := []rune(text)
	start := 0
	if at > 0 {
		start = max(0, utf8.RuneCountInString(text[:at])-width/3)
	}
	end := min(len(runes), start+width)
	for start > 0 && start < end && runes[start-1] != ' ' {
		start++
	}
	for end < len(runes) && end > start && runes[end] != ' ' {
		end--
	}
	out := strings.TrimSpace(string(runes[start:end]))
	if start > 0 {
		out = "…" + out
	}
	if end < len(runes) {
		out += "…"
	}
	return out
}
