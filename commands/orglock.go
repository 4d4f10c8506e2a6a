package commands

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/eventstore"
)

// Commands that add to an organization (creating one of its spaces, adding a space member, who must
// belong to it) and commands that take from it (deleting it with all its spaces, a member leaving and
// losing their space memberships) read one stream and append to others, so stream versions alone do
// not order them: a space created while its organization is being deleted could escape the deletion.
// They therefore decide and append while holding the organization's transaction-level advisory lock,
// shared for adding and exclusive for taking, and read the organization only once they hold it. Each
// then sees everything the other kind committed before it, so the new space is in the deletion's
// batch, or its creation finds the organization deleted.

// The same mechanism orders moves in a space's folder tree with folder deletions (files.go).
//
// While it holds the lock, a command reads through the pool on other connections (they see what the
// lock's earlier holders committed). So that those reads always find a free connection, at most
// orgLockSlots commands hold such a lock at a time in a process; the pool has more
// connections than that.
const orgLockSlots = 4

// txn is a transaction that commands append in; its appends are announced once it commits.
type txn struct {
	pgx.Tx
	appended []eventstore.AppendResult
}

// withOrgLock runs f in a transaction holding organization orgID's lock (exclusive or shared) and
// commits if f returns nil.
func (h *Handlers) withOrgLock(ctx context.Context, orgID uuid.UUID, exclusive bool, f func(t *txn) error) error {
	return h.withLock(ctx, "atlas.organization:"+orgID.String(), exclusive, f)
}

// withLock runs f in a transaction holding the advisory lock named key (exclusive or shared) and
// commits if f returns nil.
func (h *Handlers) withLock(ctx context.Context, key string, exclusive bool, f func(t *txn) error) error {
	lock := `SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))`
	if exclusive {
		lock = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`
	}
	select {
	case h.orgLocks <- struct{}{}:
		defer func() { <-h.orgLocks }()
	case <-ctx.Done():
		return ctx.Err()
	}
	t := &txn{}
	err := pgx.BeginFunc(ctx, h.sessions.Pool, func(tx pgx.Tx) error {
		t.Tx = tx
		if _, err := tx.Exec(ctx, lock, key); err != nil {
			return fmt.Errorf("lock %s: %w", key, err)
		}
		return f(t)
	})
	if err != nil {
		return err
	}
	for _, res := range t.appended {
		h.store.Committed(res)
	}
	return nil
}

// appendIn appends req in t, or on its own without one (t nil). In t, the append runs under a
// savepoint, so that a refused append (a version conflict, a taken reservation) leaves the transaction
// usable for whatever the caller does next.
func (h *Handlers) appendIn(ctx context.Context, t *txn, req eventstore.AppendRequest) (eventstore.AppendResult, error) {
	if t == nil {
		return h.store.Append(ctx, req)
	}
	var res eventstore.AppendResult
	err := pgx.BeginFunc(ctx, t.Tx, func(sp pgx.Tx) (err error) {
		res, err = h.store.AppendTx(ctx, sp, req)
		return err
	})
	if err == nil {
		t.appended = append(t.appended, res)
	}
	return res, err
}
