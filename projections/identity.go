package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
)

// Projector names, as the admin API and CLI show them.
const (
	UsersProjector  = "users"
	SpacesProjector = "spaces"
)

// Users projects user events into the users table (with decrypted personal data).
func Users() *Projector {
	return &Projector{
		Name: UsersProjector, Version: 1, Tables: []string{"users"},
		Handlers: map[string]Handler{
			user.EventRegistered: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(user.Registered)
				_, err := tx.Exec(ctx, `INSERT INTO users (id, email, name, personal_space_id, version, created_at, updated_at)
					VALUES ($1, $2, $3, $4, $5, $6, $6)`,
					e.UserID, e.Email, e.Name, e.PersonalSpaceID, r.StreamVersion, e.RegisteredAt)
				return err
			},
			// An erased user's row stays as a tombstone (ids elsewhere still resolve) without their
			// name or email.
			user.EventErased: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(user.Erased)
				_, err := tx.Exec(ctx, `UPDATE users SET email = $2, name = $2, erased_at = $3, updated_at = $3, version = $4
					WHERE id = $1`, e.UserID, domain.ErasedValue, e.ErasedAt, r.StreamVersion)
				return err
			},
		},
	}
}

// Spaces projects space events into the spaces table.
func Spaces() *Projector {
	update := func(set string, args func(r eventstore.Record) []any) Handler {
		return func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			a := append([]any{r.StreamID, r.StreamVersion}, args(r)...)
			_, err := tx.Exec(ctx, `UPDATE spaces SET version = $2, `+set+` WHERE id = $1`, a...)
			return err
		}
	}
	return &Projector{
		// Version 2 added the description (space.created.v2, space.description_changed.v1). The
		// tables of version 1 are rebuilt into this shape beside the live ones (rebuild.go); queries
		// read the column in a way that works on both shapes meanwhile (spaceDescription).
		Name: SpacesProjector, Version: 2, Tables: []string{"spaces", "space_members"},
		ShadowDDL: `ALTER TABLE spaces ADD COLUMN description text NOT NULL DEFAULT ''`,
		Handlers: map[string]Handler{
			space.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(space.Created) // version 1 events arrive upcast, with an empty description
				_, err := tx.Exec(ctx, `INSERT INTO spaces (id, owner_user_id, org_id, personal, name, slug, visibility,
					description, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)`,
					e.SpaceID, e.OwnerUserID, e.OrgID, e.Personal, e.Name, e.Slug, e.Visibility, e.Description, r.StreamVersion, e.CreatedAt)
				return err
			},
			space.EventDescribed: update("description = $3, updated_at = $4", func(r eventstore.Record) []any {
				e := r.Event.(space.DescriptionChanged)
				return []any{e.Description, e.ChangedAt}
			}),
			space.EventRenamed: update("name = $3, updated_at = $4", func(r eventstore.Record) []any {
				e := r.Event.(space.Renamed)
				return []any{e.Name, e.RenamedAt}
			}),
			space.EventSlugChanged: update("slug = $3, updated_at = $4", func(r eventstore.Record) []any {
				e := r.Event.(space.SlugChanged)
				return []any{e.Slug, e.ChangedAt}
			}),
			space.EventVisibilityChanged: update("visibility = $3, updated_at = $4", func(r eventstore.Record) []any {
				e := r.Event.(space.VisibilityChanged)
				return []any{e.Visibility, e.ChangedAt}
			}),
			space.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				if _, err := tx.Exec(ctx, `DELETE FROM space_members WHERE space_id = $1`, r.StreamID); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM spaces WHERE id = $1`, r.StreamID)
				return err
			},
			space.EventMemberAdded: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(space.MemberAdded)
				if _, err := tx.Exec(ctx, `INSERT INTO space_members (space_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)`,
					e.SpaceID, e.UserID, e.Role, e.AddedAt); err != nil {
					return err
				}
				return update("updated_at = $3", func(eventstore.Record) []any { return []any{e.AddedAt} })(ctx, tx, r)
			},
			space.EventMemberRoleChanged: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(space.MemberRoleChanged)
				if _, err := tx.Exec(ctx, `UPDATE space_members SET role = $3 WHERE space_id = $1 AND user_id = $2`, e.SpaceID, e.UserID, e.Role); err != nil {
					return err
				}
				return update("updated_at = $3", func(eventstore.Record) []any { return []any{e.ChangedAt} })(ctx, tx, r)
			},
			space.EventMemberRemoved: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(space.MemberRemoved)
				if _, err := tx.Exec(ctx, `DELETE FROM space_members WHERE space_id = $1 AND user_id = $2`, e.SpaceID, e.UserID); err != nil {
					return err
				}
				return update("updated_at = $3", func(eventstore.Record) []any { return []any{e.RemovedAt} })(ctx, tx, r)
			},
		},
	}
}

// SpaceMemberView is one member of a space.
type SpaceMemberView struct {
	UserID  uuid.UUID `json:"user_id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	AddedAt time.Time `json:"added_at"`
}

// SpaceMembers lists a space's members for a viewer who may read the space in their own name (its
// managers and members; not everyone who can read a public space); CodeNotFound otherwise.
func (q *Queries) SpaceMembers(ctx context.Context, viewer, id uuid.UUID) ([]SpaceMemberView, error) {
	out := []SpaceMemberView{}
	err := q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM permissions
			WHERE principal_id = $1 AND permission = 'read' AND resource_id = $2)`, viewer, id).Scan(&ok); err != nil {
			return fmt.Errorf("check space members permission: %w", err)
		}
		if !ok {
			return domain.Errorf(domain.CodeNotFound, "space not found")
		}
		rows, err := tx.Query(ctx, `SELECT m.user_id, coalesce(u.name, ''), m.role, m.added_at FROM space_members m
			LEFT JOIN users u ON u.id = m.user_id WHERE m.space_id = $1 ORDER BY m.added_at, m.user_id`, id)
		if err != nil {
			return fmt.Errorf("list space members: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v SpaceMemberView
			if err := rows.Scan(&v.UserID, &v.Name, &v.Role, &v.AddedAt); err != nil {
				return err
			}
			v.AddedAt = v.AddedAt.UTC()
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// UserView is a user as the users read model holds it.
type UserView struct {
	ID              uuid.UUID `json:"id"`
	Email           string    `json:"email"`
	Name            string    `json:"name"`
	PersonalSpaceID uuid.UUID `json:"personal_space_id"`
	Version         int64     `json:"version"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// SpaceView is a space as the spaces read model holds it.
type SpaceView struct {
	ID          uuid.UUID  `json:"id"`
	OwnerUserID *uuid.UUID `json:"owner_user_id"`
	OrgID       *uuid.UUID `json:"org_id"`
	Personal    bool       `json:"personal"`
	Name        string     `json:"name"`
	Slug        string     `json:"slug"`
	Visibility  string     `json:"visibility"`
	Description string     `json:"description"`
	Version     int64      `json:"version"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Queries answers reads from the read models.
type Queries struct {
	pool *pgxpool.Pool
}

// NewQueries returns the read-model queries over pool, whose connections run as the API's database
// role (migrations.APIRole) so that row-level security applies.
func NewQueries(pool *pgxpool.Pool) *Queries { return &Queries{pool: pool} }

// tenantTx runs f in a read-only transaction whose row-level-security context is viewer and the
// organizations viewer belongs to (atlas_enter, transaction-local). Every query runs this way: the
// WHERE clauses and permission joins decide what a viewer may read, and the policies make sure that a
// query that got them wrong still sees nothing outside the viewer's tenants.
func (q *Queries) tenantTx(ctx context.Context, viewer uuid.UUID, f func(pgx.Tx) error) error {
	// BEGIN and atlas_enter go in one round trip (the simple protocol takes both statements at once);
	// a uuid's text form is hex digits and hyphens, safe as a literal.
	begin := "BEGIN READ ONLY; SELECT atlas_enter('" + viewer.String() + "')"
	return pgx.BeginTxFunc(ctx, q.pool, pgx.TxOptions{BeginQuery: begin}, f)
}

// tenantQuery is tenantTx for a single statement, in one round trip: BEGIN, atlas_enter, the query
// and COMMIT go to the server as one batch. each is called for every row.
func (q *Queries) tenantQuery(ctx context.Context, viewer uuid.UUID, each func(pgx.Rows) error, sql string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN READ ONLY")
	b.Queue("SELECT atlas_enter($1)", viewer)
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	br := q.pool.SendBatch(ctx, b)
	err := func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("enter tenant context: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := each(rows); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = br.Exec()
		return err
	}()
	// Closing reads whatever is left; a connection left inside a failed transaction is not reused
	// (the pool discards connections that are not idle).
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// User returns the viewer's own user record; CodeNotFound when there is none.
func (q *Queries) User(ctx context.Context, viewer uuid.UUID) (UserView, error) {
	var u UserView
	err := q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id, email, name, personal_space_id, version, created_at, updated_at
			FROM users WHERE id = $1`, viewer).
			Scan(&u.ID, &u.Email, &u.Name, &u.PersonalSpaceID, &u.Version, &u.CreatedAt, &u.UpdatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return u, domain.Errorf(domain.CodeNotFound, "user not found")
	}
	return u, err
}

const spaceColumns = `id, owner_user_id, org_id, personal, name, slug, visibility, version, created_at, updated_at`

// spaceDescription reads the description of the spaces row alias whether or not the live table has
// that column yet: while version 2 of the spaces projector is rebuilt, version 1's table (without it)
// keeps serving. The expand-then-rebuild idiom for any column a new version adds.
func spaceDescription(alias string) string {
	return `coalesce(to_jsonb(` + alias + `)->>'description', '')`
}

func scanSpace(row pgx.Row) (SpaceView, error) {
	var s SpaceView
	err := row.Scan(&s.ID, &s.OwnerUserID, &s.OrgID, &s.Personal, &s.Name, &s.Slug, &s.Visibility, &s.Version, &s.CreatedAt, &s.UpdatedAt,
		&s.Description)
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return s, err
}

// Space returns a space the viewer may read, checked against the permission projection. Any other
// space, existing or not, is CodeNotFound, so existence never leaks.
func (q *Queries) Space(ctx context.Context, viewer, id uuid.UUID) (SpaceView, error) {
	var s SpaceView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) (err error) {
		s, err = scanSpace(rows)
		found = true
		return err
	}, `SELECT `+spaceColumns+`, `+spaceDescription("spaces")+` FROM spaces
		WHERE id = $1 AND EXISTS (SELECT 1 FROM permissions p
			WHERE p.principal_id IN ($2, $3) AND p.permission = 'read' AND p.resource_id = spaces.id)`,
		id, viewer, Anyone)
	if err == nil && !found {
		return s, domain.Errorf(domain.CodeNotFound, "space not found")
	}
	return s, err
}

// SpacePage is one page of a space listing.
type SpacePage struct {
	Items      []SpaceView
	NextCursor *string
}

// SpacesOf lists the spaces viewer may read in their own name (only those of orgID when it is given), oldest first, limit per page, after cursor ("" for the first
// page). A malformed cursor is CodeBadRequest.
func (q *Queries) SpacesOf(ctx context.Context, viewer uuid.UUID, orgID *uuid.UUID, cursor string, limit int) (SpacePage, error) {
	after, err := parseCursor(cursor)
	if err != nil {
		return SpacePage{}, err
	}
	// Space ids are UUIDv7, so id order is creation order and the id is the cursor. The list is the
	// spaces the viewer holds a read permission on in their own name: public spaces of others are
	// readable by link but not listed.
	page := SpacePage{Items: []SpaceView{}}
	err = q.tenantQuery(ctx, viewer, func(rows pgx.Rows) error {
		s, err := scanSpace(rows)
		page.Items = append(page.Items, s)
		return err
	}, `SELECT `+prefixed("s.", spaceColumns)+`, `+spaceDescription("s")+` FROM permissions p
		JOIN spaces s ON s.id = p.resource_id
		WHERE p.principal_id = $1 AND p.permission = 'read' AND p.resource_id > $2
		  AND ($4::uuid IS NULL OR s.org_id = $4)
		ORDER BY p.resource_id LIMIT $3`, viewer, after, limit+1, orgID)
	if err != nil {
		return SpacePage{}, fmt.Errorf("list spaces: %w", err)
	}
	page.Items, page.NextCursor = trimPage(page.Items, limit, func(v SpaceView) string { return v.ID.String() })
	return page, nil
}

// trimPage cuts items, fetched with one more than limit, to limit, and returns the cursor of the next
// page (the key of the page's last item) when there was more, nil otherwise.
func trimPage[T any](items []T, limit int, key func(T) string) ([]T, *string) {
	if len(items) <= limit {
		return items, nil
	}
	c := key(items[limit-1])
	return items[:limit], &c
}

// inSpace lists a page of a space's items (notes, chats, tasks) for a viewer who may read the space
// (CodeNotFound otherwise), after the id in cursor ("" for the first page; a malformed one is
// CodeBadRequest), with the next page's cursor. listSQL selects the page in id order: $1 the space,
// $2 the id after which to start, $3 how many, then extra.
func inSpace[T any](ctx context.Context, q *Queries, viewer, spaceID uuid.UUID, cursor string, limit int,
	what, listSQL string, scan func(pgx.Row) (T, error), id func(T) uuid.UUID, extra ...any) ([]T, *string, error) {
	after, err := parseCursor(cursor)
	if err != nil {
		return nil, nil, err
	}
	items, err := pageUnder(ctx, q, viewer, `SELECT `+readableSpace("$1"), spaceID, "space", "list "+what,
		listSQL, append([]any{spaceID, after, limit + 1}, extra...), scan)
	if err != nil {
		return nil, nil, err
	}
	items, next := trimPage(items, limit, func(v T) string { return id(v).String() })
	return items, next, nil
}

// numberedChildren lists the children of a parent row that viewer may read, numbered from 1 (note
// revisions, chat messages), after the number in cursor ("" for the first page), with the next
// page's cursor. parentSQL is an EXISTS query over the parent ($1 its id, $2 viewer, $3 Anyone); a
// parent viewer may not read is CodeNotFound, "<what> not found". listSQL selects the page ($1 the
// parent's id, $2 the number after which to start, $3 how many) in number order.
func numberedChildren[T any](ctx context.Context, q *Queries, viewer, parent uuid.UUID, cursor string, limit int,
	what, parentSQL, listSQL string, scan func(pgx.Row) (T, error), number func(T) int64) ([]T, *string, error) {
	var after int64
	if cursor != "" {
		var err error
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil || after < 0 {
			return nil, nil, domain.Errorf(domain.CodeBadRequest, "cursor %q is not valid", cursor)
		}
	}
	items, err := pageUnder(ctx, q, viewer, parentSQL, parent, what, "list the children of a "+what,
		listSQL, []any{parent, after, limit + 1}, scan)
	if err != nil {
		return nil, nil, err
	}
	items, next := trimPage(items, limit, func(v T) string { return strconv.FormatInt(number(v), 10) })
	return items, next, nil
}

// pageUnder reads, in viewer's tenant transaction, the rows of listSQL (with listArgs) under a parent
// that viewer may read: checkSQL answers that as one boolean ($1 the parent, $2 viewer, $3 Anyone),
// and false is CodeNotFound, "<parentKind> not found". doing names the listing in errors.
func pageUnder[T any](ctx context.Context, q *Queries, viewer uuid.UUID, checkSQL string, parent uuid.UUID,
	parentKind, doing, listSQL string, listArgs []any, scan func(pgx.Row) (T, error)) ([]T, error) {
	items := []T{}
	err := q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, checkSQL, parent, viewer, Anyone).Scan(&ok); err != nil {
			return fmt.Errorf("check %s permission: %w", parentKind, err)
		}
		if !ok {
			return domain.Errorf(domain.CodeNotFound, "%s not found", parentKind)
		}
		rows, err := tx.Query(ctx, listSQL, listArgs...)
		if err != nil {
			return fmt.Errorf("%s: %w", doing, err)
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return err
			}
			items = append(items, v)
		}
		return rows.Err()
	})
	return items, err
}

// prefixed qualifies each column of a comma-separated list with prefix.
func prefixed(prefix, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// parseCursor reads an id cursor ("" is the start); a malformed one is CodeBadRequest.
func parseCursor(cursor string) (uuid.UUID, error) {
	if cursor == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(cursor)
	if err != nil {
		return uuid.Nil, domain.Errorf(domain.CodeBadRequest, "cursor %q is not valid", cursor)
	}
	return id, nil
}
