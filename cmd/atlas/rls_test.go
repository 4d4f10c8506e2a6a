package main

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/migrations"
)

// credentialTables are the tables without row-level security: the event log and what commands keep
// next to it, addressed by stream, token hash or key and never listed by tenant. Every other table
// must have FORCE ROW LEVEL SECURITY; a new table fails TestRowLevelSecurityCoversEveryTable until it
// has policies or joins this list with a reason.
var credentialTables = map[string]bool{
	"events": true, "reservations": true, "idempotency_keys": true, "subject_keys": true, // write side
	"sessions": true, "api_key_usage": true, // credentials, looked up by token hash or key id
	"projection_offsets": true, "projector_status": true, // projector bookkeeping, no tenant data
	"goose_db_version": true, // migrations
	"search_state":     true, // which search collection is active: no tenant data
	"audit_seals":      true, // seals of the global order: positions and hashes, no tenant data
	// The task job queue (River): commands insert and cancel jobs in their own transactions and
	// workers claim them, as the API role. A job names only a task id, run number and kind; the task
	// itself (space, input, output) lives in events and the RLS-protected tasks read model.
	"river_job": true, "river_leader": true, "river_queue": true, "river_client": true, "river_client_queue": true,
	"river_migration": true, "river_notification": true,
}

// projectorOnly reports whether a table is the projectors' private bookkeeping, which the API may not
// read at all.
func projectorOnly(table string) bool {
	return strings.HasPrefix(table, "perm_") || strings.HasSuffix(table, "_tombstones") || strings.HasPrefix(table, "blob_") ||
		table == "search_work"
}

// rlsTables lists the tables under row-level security, from the catalog.
func rlsTables(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT relname FROM pg_class
		WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relrowsecurity AND relforcerowsecurity ORDER BY relname`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestRowLevelSecurityCoversEveryTable(t *testing.T) {
	app, _ := openApp(t, nil)
	ctx := t.Context()
	rows, err := app.ProjectorPool.Query(ctx, `SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity,
			has_table_privilege($1, c.oid, 'INSERT') OR has_table_privilege($1, c.oid, 'UPDATE')
				OR has_table_privilege($1, c.oid, 'DELETE') OR has_table_privilege($1, c.oid, 'TRUNCATE')
		FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY 1`, migrations.APIRole)
	if err != nil {
		t.Fatal(err)
	}
	type table struct {
		name                string
		forced, apiCanWrite bool
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var tb table
		return tb, r.Scan(&tb.name, &tb.forced, &tb.apiCanWrite)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 15 {
		t.Fatalf("only %d tables found", len(tables))
	}
	for _, tb := range tables {
		switch {
		case credentialTables[tb.name] && tb.forced:
			t.Errorf("%s has row-level security but is listed as a credential table", tb.name)
		case !credentialTables[tb.name] && !tb.forced:
			t.Errorf("%s has no FORCE ROW LEVEL SECURITY: give it tenant policies (or list it in credentialTables with a reason)", tb.name)
		case !credentialTables[tb.name] && tb.apiCanWrite:
			t.Errorf("the API role may write %s, a read model only projectors write", tb.name)
		}
	}
}

// TestRowLevelSecurityFailsClosed queries every tenant table directly as the API's database role, as
// a query that forgot its WHERE clause would: with no tenant set it sees nothing; with one user's
// tenants set it sees none of another tenant's rows; and the context ends with its transaction.
func TestRowLevelSecurityFailsClosed(t *testing.T) {
	s := startServer(t)
	ctx := t.Context()
	type tenant struct{ token, user, personal, org, space, key, friend, note, folder, file string }
	mk := func(name string) tenant {
		var tn tenant
		tn.token, tn.user, tn.personal = s.register(name+"@rls.test", name+" Person")
		r := s.do("POST", "/api/v1/orgs", tn.token, map[string]string{"name": name, "slug": name})
		expect(t, r, 201, "")
		tn.org = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/spaces", tn.token, map[string]any{"org_id": tn.org, "name": "Private", "slug": "private"})
		expect(t, r, 201, "")
		tn.space = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/notes", tn.token, map[string]string{"title": "Secret plan", "body": "v1"})
		expect(t, r, 201, "")
		tn.note = r.json(t)["id"].(string)
		expect(t, s.do("PATCH", "/api/v1/notes/"+tn.note, tn.token, map[string]string{"body": "v2"}), 200, "")
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/folders", tn.token, map[string]string{"name": "Folder"})
		expect(t, r, 201, "")
		tn.folder = r.json(t)["id"].(string)
		r = s.upload(tn.token, tn.space, "secret.txt", []byte("secret"), "folder_id", tn.folder)
		expect(t, r, 201, "")
		tn.file = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/chats", tn.token, map[string]string{"title": "Secret chat"})
		expect(t, r, 201, "")
		expect(t, s.do("POST", "/api/v1/chats/"+r.json(t)["id"].(string)+"/messages", tn.token, textMessage("secret question")), 201, "")
		r = s.do("POST", "/api/v1/spaces", tn.token, map[string]any{"org_id": tn.org, "name": "Gone", "slug": "gone"})
		expect(t, r, 201, "")
		expect(t, s.do("DELETE", "/api/v1/spaces/"+r.json(t)["id"].(string), tn.token, nil), 200, "")
		_, tn.friend, _ = s.register(name+"-friend@rls.test", name+" Friend")
		expect(t, s.do("POST", "/api/v1/spaces/"+tn.personal+"/members", tn.token, map[string]string{"user_id": tn.friend, "role": "viewer"}), 201, "")
		expect(t, s.do("POST", "/api/v1/orgs/"+tn.org+"/invitations", tn.token, map[string]string{"email": "guest-" + name + "@rls.test"}), 201, "")
		r = s.do("POST", "/api/v1/me/api-keys", tn.token, map[string]string{"name": "key"})
		expect(t, r, 201, "")
		tn.key = r.json(t)["id"].(string)
		// A platform role, so that platform_roles has a row per tenant.
		if code := run([]string{"admin", "grant", name + "@rls.test", "auditor"}, func(k string) string { return s.env[k] }, io.Discard, io.Discard); code != 0 {
			t.Fatalf("admin grant exited %d", code)
		}
		waitFor(t, 10*time.Second, "the platform role to be projected", func() bool {
			var n int
			err := s.app.ProjectorPool.QueryRow(t.Context(), `SELECT count(*) FROM platform_roles WHERE user_id = $1`, tn.user).Scan(&n)
			return err == nil && n == 1
		})
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/tasks", tn.token, map[string]any{"kind": "noop"})
		expect(t, r, 201, "")
		expect(t, s.do("GET", "/api/v1/tasks/"+r.json(t)["id"].(string), tn.token, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
		// Read back through the API with the consistency token: every read model has the rows.
		expect(t, s.do("GET", "/api/v1/me/api-keys", tn.token, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
		return tn
	}
	a, b := mk("alpha"), mk("beta")

	tables := rlsTables(t, s.app.ProjectorPool)
	if len(tables) < 11 {
		t.Fatalf("only %d tables under row-level security: %v", len(tables), tables)
	}
	for _, table := range tables {
		var all int
		if err := s.app.ProjectorPool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&all); err != nil {
			t.Fatal(err)
		}
		if all == 0 && !strings.HasPrefix(table, "blob_") && table != "search_work" { // workers empty work items as they go
			t.Fatalf("%s is empty: the test would prove nothing", table)
		}
	}

	// One connection as the API role, as the app's pool hands them out.
	conn, err := s.app.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var role string
	if err := conn.QueryRow(ctx, `SELECT current_user`).Scan(&role); err != nil || role != migrations.APIRole {
		t.Fatalf("the API pool runs as %q (%v), want %s", role, err, migrations.APIRole)
	}
	countAll := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}, table string) (int, error) {
		var n int
		err := q.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n)
		return n, err
	}
	noContext := func(when string) {
		t.Helper()
		for _, table := range tables {
			n, err := countAll(conn, table)
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == "42501" && projectorOnly(table):
				// The projector's private tables: the API may not read them at all.
			case err != nil:
				t.Fatalf("%s: %s: %v", when, table, err)
			case n != 0:
				t.Errorf("%s: the API role sees %d rows of %s without a tenant", when, n, table)
			}
		}
	}
	noContext("before any request")

	// A's context: every row visible is A's own or shared with A; nothing names B's user, organization,
	// spaces or key.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT atlas_enter($1)`, a.user); err != nil {
		t.Fatal(err)
	}
	seenSomething := 0
	for _, table := range tables {
		if projectorOnly(table) {
			continue
		}
		rows, err := tx.Query(ctx, `SELECT t::text FROM `+table+` t`)
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range texts {
			for _, theirs := range []string{b.user, b.personal, b.org, b.space, b.key, b.friend, b.note, b.folder, b.file} {
				if strings.Contains(row, theirs) {
					t.Errorf("in alpha's context, %s shows beta's %s: %s", table, theirs, row)
				}
			}
		}
		seenSomething += len(texts)
		if n, err := countAll(tx, table); err != nil || n != len(texts) {
			t.Fatalf("%s: count %d, %v", table, n, err)
		}
	}
	if seenSomething == 0 {
		t.Fatal("alpha sees nothing at all in its own context: the policies are too tight")
	}
	var orgs int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM orgs WHERE id = $1`, a.org).Scan(&orgs); err != nil || orgs != 1 {
		t.Fatalf("alpha's own organization: %d rows, %v", orgs, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// The context was transaction-local: the same connection is back to no tenant.
	noContext("after alpha's transaction committed")

	// A tenant context cannot be entered for nobody.
	if _, err := conn.Exec(ctx, `SELECT atlas_enter('00000000-0000-0000-0000-000000000000')`); err == nil {
		t.Error("atlas_enter accepted the nil user")
	}
	// The API role cannot write a read model even in a tenant's context.
	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT atlas_enter($1)`, a.user); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if _, err := tx.Exec(ctx, `UPDATE spaces SET name = 'x' WHERE id = $1`, a.space); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("the API role updated a read model: %v", err)
	}
}

// TestRunsWithoutSuperuser runs Atlas the way production does: the DATABASE_URL user owns its
// database and may create roles, but is no superuser, so FORCE ROW LEVEL SECURITY holds it too.
// Migrations create the roles (or find them), the API and projectors switch to them, and the owner
// itself sees no read-model rows.
func TestRunsWithoutSuperuser(t *testing.T) {
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	owner, db := "atlas_test_owner_"+suffix, "atlas_test_owned_"+suffix
	for _, sql := range []string{
		`CREATE ROLE ` + owner + ` LOGIN CREATEROLE`,
		`CREATE DATABASE ` + db + ` OWNER ` + owner,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, sql := range []string{`DROP DATABASE IF EXISTS ` + db + ` WITH (FORCE)`, `DROP ROLE IF EXISTS ` + owner} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Logf("clean up: %v", err)
			}
		}
		admin.Close(ctx)
	})
	// PostgreSQL 15 gives the public schema to the database owner only when the database is created
	// from template0's public schema owner; make the owner's ownership explicit.
	u, err := url.Parse(pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `ALTER SCHEMA public OWNER TO `+owner)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(owner)
	s := startServerWith(t, map[string]string{"DATABASE_URL": u.String()})

	r := s.do("POST", "/api/v1/auth/register", "", map[string]string{"email": "owner-check@rls.test", "password": "correct horse battery", "name": "Owner Check"})
	expect(t, r, 201, "")
	reg := r.json(t)
	token, user := reg["token"].(string), reg["user"].(map[string]any)
	userID, personal := user["id"].(string), user["personal_space_id"].(string)
	r = s.do("GET", "/api/v1/spaces/"+personal, token, nil, "X-Consistency-Token", reg["position"].(string))
	expect(t, r, 200, "")
	r = s.do("GET", "/api/v1/me", token, nil)
	expect(t, r, 200, "")
	if r.json(t)["id"] != userID {
		t.Fatalf("GET /me: %s", r.body)
	}

	// Sealing and verification work without a superuser too (the identity sequence, pg_locks).
	for _, args := range [][]string{{"audit", "seal"}, {"audit", "verify"}} {
		var out strings.Builder
		if code := run(args, func(k string) string { return s.env[k] }, &out, io.Discard); code != 0 ||
			(args[1] == "seal" && !strings.Contains(out.String(), "wrote 1 seals") && !strings.Contains(out.String(), "wrote 0 seals")) {
			t.Fatalf("atlas %v as the owner: exit %d: %s", args, code, out.String())
		}
	}
	var seals int
	if err := s.app.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_seals`).Scan(&seals); err != nil || seals < 1 {
		t.Fatalf("no seal written without a superuser: %d, %v", seals, err)
	}

	ownerPool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ownerPool.Close()
	var isSuper bool
	var spaces int
	if err := ownerPool.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&isSuper); err != nil || isSuper {
		t.Fatalf("the owner is a superuser (%v); the test proves nothing", err)
	}
	if err := ownerPool.QueryRow(ctx, `SELECT count(*) FROM spaces`).Scan(&spaces); err != nil || spaces != 0 {
		t.Fatalf("the owner sees %d spaces (%v); FORCE ROW LEVEL SECURITY should hide them", spaces, err)
	}
}
