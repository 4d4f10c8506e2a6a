package eventstore

import (
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CancelQueriesOnContextEnd makes connections from cfg answer a context that ends mid-query by asking
// PostgreSQL to cancel the query, instead of pgx's default of closing the connection. A projector's
// consuming transaction then survives a handler's timeout: the query fails, the handler's savepoint is
// rolled back, and the events acknowledged before it still commit. If the server does not answer the
// cancel within two seconds, the connection is closed after all.
func CancelQueriesOnContextEnd(cfg *pgxpool.Config) {
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 2 * time.Second}
	}
}
