package projections

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SearchCollections decides which collection answers searches. A process whose embedder differs
// from the one the active collection was built with sets its own collection as the target and
// rebuilds the search projector, so that the indexer writes every document into the target while the
// active collection keeps serving; once the target is complete (the projector live and no work item
// left), Switch makes it active and the old collection can go.
type SearchCollections struct {
	Pool    *pgxpool.Pool // as the projector role
	Runtime *Runtime
	Log     *slog.Logger

	mu     sync.Mutex
	active string
	seen   time.Time
}

// Prepare records class as the target; when it differs from the active collection (or there is
// none yet), it starts a rebuild of the search projector so that everything is written into class.
// It returns the active collection.
func (c *SearchCollections) Prepare(ctx context.Context, class string) (string, error) {
	var active, target string
	err := c.Pool.QueryRow(ctx, `INSERT INTO search_state (active_class, target_class) VALUES ($1, $1)
		ON CONFLICT (id) DO UPDATE SET target_class = excluded.target_class
		RETURNING active_class, target_class`, class).Scan(&active, &target)
	if err != nil {
		return "", fmt.Errorf("search state: %w", err)
	}
	if active != class {
		st, err := c.Runtime.status(ctx, c.Runtime.Projector(SearchProjector))
		if err != nil {
			return "", err
		}
		if st.Status != "rebuilding" {
			if _, err := c.Runtime.StartRebuild(ctx, SearchProjector); err != nil {
				return "", err
			}
			c.Log.Info("search: building a new collection for the new embedder; the old one serves meanwhile", "active", active, "target", class)
		}
	}
	return active, nil
}

// Active returns the collection that answers searches (read at most once a second).
func (c *SearchCollections) Active(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active != "" && time.Since(c.seen) < time.Second {
		return c.active, nil
	}
	if err := c.Pool.QueryRow(ctx, `SELECT active_class FROM search_state`).Scan(&c.active); err != nil {
		return "", fmt.Errorf("search state: %w", err)
	}
	c.seen = time.Now()
	return c.active, nil
}

// Switch makes the target active once it is complete, and returns the collection it replaced ("" when
// nothing switched).
func (c *SearchCollections) Switch(ctx context.Context) (string, error) {
	var active, target string
	if err := c.Pool.QueryRow(ctx, `SELECT active_class, target_class FROM search_state`).Scan(&active, &target); err != nil {
		return "", err
	}
	if active == target {
		return "", nil
	}
	st, err := c.Runtime.status(ctx, c.Runtime.Projector(SearchProjector))
	if err != nil || st.Status != "live" || st.LagEvents > 0 {
		return "", err
	}
	tag, err := c.Pool.Exec(ctx, `UPDATE search_state SET active_class = target_class, switched_at = now()
		WHERE active_class = $1 AND target_class = $2 AND NOT EXISTS (SELECT 1 FROM search_work)`, active, target)
	if err != nil || tag.RowsAffected() == 0 {
		return "", err
	}
	c.mu.Lock()
	c.active, c.seen = target, time.Now()
	c.mu.Unlock()
	c.Log.Info("search: switched to the new collection", "active", target, "replaced", active)
	return active, nil
}
