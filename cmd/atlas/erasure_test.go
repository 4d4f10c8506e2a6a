package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/search/index"
)

// ownerPool connects as the database owner, which row-level security does not hold back (it is a
// superuser in tests): what an operator or an attacker with the database would see.
func ownerPool(t *testing.T, s *server) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// plaintextIn lists "table: n rows" for every table of the database holding needle anywhere in a
// row's text (the events' data and metadata included), case-insensitively.
func plaintextIn(t *testing.T, pool *pgxpool.Pool, needle string) []string {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, tb := range tables {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{tb}.Sanitize()+` t WHERE strpos(lower(t::text), lower($1)) > 0`, needle).Scan(&n); err != nil {
			t.Fatalf("grep %s: %v", tb, err)
		}
		if n > 0 {
			found = append(found, fmt.Sprintf("%s: %d rows", tb, n))
		}
	}
	return found
}

// searchTenant runs a keyword search straight against Weaviate in one tenant, bypassing every
// permission check: what the index still holds.
func searchTenant(t *testing.T, s *server, pool *pgxpool.Pool, tenant, q string) []index.Hit {
	t.Helper()
	var class string
	if err := pool.QueryRow(context.Background(), `SELECT active_class FROM search_state`).Scan(&class); err != nil {
		t.Fatal(err)
	}
	hits, err := index.New(s.app.weaviate, class).Search(context.Background(), index.Query{Text: q, Mode: index.Keyword, Tenants: []string{tenant}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestErasure(t *testing.T) {
	s := startServer(t)
	dataDir := s.env["ATLAS_DATA_DIR"]
	db := ownerPool(t, s)
	ctx := context.Background()
	const (
		email    = "ada.erasure@example.com"
		name     = "Ada Quixotic-Lovelace"
		password = "correct horse battery"
		title    = "Zephyrine diary"
		body     = "my plaintext secret xylophonist"
		edited   = "edited secret quagmirelike"
		fileName = "ada-marmalade-record.txt"
	)
	ada, adaID, personal := s.register(email, name)
	bob, bobID, bobPersonal := s.register("bob.erasure@example.com", "Bob Keeper")

	// Ada's personal space: a note (edited once) and a file, searchable.
	r := s.do("POST", "/api/v1/spaces/"+personal+"/notes", ada, map[string]string{"title": title, "body": body})
	expect(t, r, 201, "")
	noteID := r.json(t)["id"].(string)
	r = s.do("PATCH", "/api/v1/notes/"+noteID, ada, map[string]string{"body": edited})
	expect(t, r, 200, "")
	r = s.upload(ada, personal, fileName, []byte("the file's own bytes"))
	expect(t, r, 201, "")
	fileID := r.json(t)["id"].(string)
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/folders", ada, map[string]string{"name": "Quincunx folder"}), 201, "")
	r = s.do("POST", "/api/v1/spaces", ada, map[string]string{"name": "Quillfeather retreat", "slug": "retreat"})
	expect(t, r, 201, "")
	retreat := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+personal+"/chats", ada, map[string]string{"title": "Zanzibarian chat"})
	expect(t, r, 201, "")
	chatID := r.json(t)["id"].(string)
	expect(t, s.do("POST", "/api/v1/chats/"+chatID+"/messages", ada, map[string]any{"role": "user",
		"parts": []map[string]string{{"type": "text", "text": "my chat secret ocelotish"}}}), 201, "")
	s.waitIndexed(ada, "/api/v1/notes/"+noteID)
	if ids, _ := s.searchIDs(ada, "xylophonist quagmirelike"); !contains(ids, noteID) {
		t.Fatalf("search before erasure finds %v, want the note", ids)
	}
	if hits := searchTenant(t, s, db, adaID, "quagmirelike"); len(hits) == 0 {
		t.Fatal("the index holds nothing of the note before erasure")
	}
	// A note in an organization's space is not sealed; one in a personal space is.
	var raw string
	if err := db.QueryRow(ctx, `SELECT data::text FROM events WHERE stream_id = $1 AND stream_version = 1`, noteID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "Zephyrine") || !strings.Contains(raw, `"subject_id": "`+adaID+`"`) {
		t.Fatalf("stored note.created = %s, want title and body sealed under the owner", raw)
	}
	// An API key, and Bob shares his personal space with Ada; Ada shares hers with Bob.
	r = s.do("POST", "/api/v1/me/api-keys", ada, map[string]string{"name": "Ada's laptop"})
	expect(t, r, 201, "")
	apiKey := r.json(t)["key"].(string)
	expect(t, s.do("POST", "/api/v1/spaces/"+bobPersonal+"/members", bob, map[string]string{"user_id": adaID, "role": "editor"}), 201, "")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/members", ada, map[string]string{"user_id": bobID, "role": "viewer"}), 201, "")

	// Organizations: Ada owns Acme alone (Bob is a member) and Solo; she is a member of Bobco, and has
	// a pending invitation to Pending Ltd.
	mkOrg := func(token, name, slug string) string {
		r := s.do("POST", "/api/v1/orgs", token, map[string]string{"name": name, "slug": slug})
		expect(t, r, 201, "")
		return r.json(t)["id"].(string)
	}
	join := func(owner, orgID, who, whoToken string) {
		r := s.do("POST", "/api/v1/orgs/"+orgID+"/invitations", owner, map[string]string{"email": who, "role": "member"})
		expect(t, r, 201, "")
		expect(t, s.do("POST", "/api/v1/invitations/"+r.json(t)["token"].(string)+"/accept", whoToken, nil), 200, "")
	}
	acme, solo := mkOrg(ada, "Acme Erasure", "acme-erasure"), mkOrg(ada, "Solo Erasure", "solo-erasure")
	bobco, pending := mkOrg(bob, "Bobco", "bobco"), mkOrg(bob, "Pending Ltd", "pending-ltd")
	join(ada, acme, "bob.erasure@example.com", bob)
	join(bob, bobco, email, ada)
	r = s.do("POST", "/api/v1/orgs/"+pending+"/invitations", bob, map[string]string{"email": email, "role": "member"})
	expect(t, r, 201, "")
	pendingInvitation := r.json(t)["id"].(string)
	// Ada works in Bobco: a space of it, where she is an editor.
	r = s.do("POST", "/api/v1/spaces", bob, map[string]string{"name": "Bobco space", "slug": "work", "org_id": bobco})
	expect(t, r, 201, "")
	bobcoSpace := r.json(t)["id"].(string)
	expect(t, s.do("POST", "/api/v1/spaces/"+bobcoSpace+"/members", bob, map[string]string{"user_id": adaID, "role": "editor"}), 201, "")

	if found := plaintextIn(t, db, name); len(found) == 0 {
		t.Fatal("the name is nowhere before erasure: the grep finds nothing")
	}
	// The email's digest (what reservations and invitations match on) confirms a guess of the address:
	// it goes too.
	digest := commands.EmailKey(email)
	if found := plaintextIn(t, db, digest); len(found) == 0 {
		t.Fatal("the email digest is nowhere before erasure")
	}
	blobsBefore := blobCount(t, dataDir)
	audit := func(args ...string) (int, string) {
		var out, errOut strings.Builder
		code := run(args, func(k string) string { return s.env[k] }, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := audit("admin", "grant", email, "auditor"); code != 0 {
		t.Fatalf("admin grant: %d %s", code, out)
	}
	waitFor(t, 10*time.Second, "her platform role is granted", func() bool {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM platform_roles WHERE user_id = $1`, adaID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	// The log so far is sealed: erasure must not disturb what the seals cover.
	if code, out := audit("audit", "seal"); code != 0 {
		t.Fatalf("audit seal: %d %s", code, out)
	}

	// Confirmation: without the password 422, with a wrong one 403, and nothing changes.
	expect(t, s.do("DELETE", "/api/v1/me", ada, map[string]string{}), 422, "validation_failed")
	expect(t, s.do("DELETE", "/api/v1/me", ada, nil), 400, "invalid_request")
	expect(t, s.do("DELETE", "/api/v1/me", ada, map[string]string{"password": "not the password"}), 403, "forbidden")
	expect(t, s.do("DELETE", "/api/v1/me", ada, map[string]string{"password": password, "user_id": bobID}), 400, "invalid_request")
	// Nobody erases anyone else: the route only ever erases the caller, confirmed by the caller's own
	// password; Bob with Ada's password is refused and Ada is untouched.
	expect(t, s.do("DELETE", "/api/v1/me", bob, map[string]string{"password": "wrong for bob"}), 403, "forbidden")
	expect(t, s.do("GET", "/api/v1/me", ada, nil), 200, "")

	// The only owner of organizations must hand them over or delete them first: 409 lists them.
	r = s.do("DELETE", "/api/v1/me", ada, map[string]string{"password": password})
	expect(t, r, 409, "conflict")
	details := r.json(t)["error"].(map[string]any)["details"].(map[string]any)
	if len(details) != 2 || details[acme] != "Acme Erasure" || details[solo] != "Solo Erasure" {
		t.Fatalf("409 details = %v, want Acme and Solo by id", details)
	}
	if msg := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "Acme Erasure") {
		t.Fatalf("409 message = %q, want the organizations named", msg)
	}
	expect(t, s.do("GET", "/api/v1/me", ada, nil), 200, "")
	expect(t, s.do("PATCH", "/api/v1/orgs/"+acme+"/members/"+bobID, ada, map[string]string{"role": "owner"}), 200, "")
	expect(t, s.do("DELETE", "/api/v1/orgs/"+solo, ada, nil), 200, "")

	r = s.do("DELETE", "/api/v1/me", ada, map[string]string{"password": password})
	expect(t, r, 202, "")
	erasure := r.json(t)
	pos := erasure["position"].(string)
	if erasure["id"] != adaID || erasure["status"] != "erased" || r.header.Get("X-Consistency-Token") != pos {
		t.Fatalf("erasure answered %s", r.body)
	}

	// Every credential stops at once: the session, the API key, the password.
	expect(t, s.do("GET", "/api/v1/me", ada, nil), 401, "unauthenticated")
	expect(t, s.do("GET", "/api/v1/me", apiKey, nil), 401, "unauthenticated")
	expect(t, s.do("POST", "/api/v1/auth/login", "", map[string]string{"email": email, "password": password}), 401, "unauthenticated")
	// Erasing again: the session is gone.
	expect(t, s.do("DELETE", "/api/v1/me", ada, map[string]string{"password": password}), 401, "unauthenticated")
	expect(t, s.do("DELETE", "/api/v1/me", apiKey, map[string]string{"password": password}), 401, "unauthenticated")

	// Her spaces and their content are gone; she left everything she belonged to.
	sync := []string{"X-Consistency-Token", pos}
	expect(t, s.do("GET", "/api/v1/spaces/"+personal, bob, nil, sync...), 404, "not_found")
	var liveSpaces int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM spaces WHERE id IN ($1, $2) OR owner_user_id = $3`, personal, retreat, adaID).Scan(&liveSpaces); err != nil || liveSpaces != 0 {
		t.Fatalf("%d of her spaces left in the read model (%v)", liveSpaces, err)
	}
	expect(t, s.do("GET", "/api/v1/notes/"+noteID, bob, nil, sync...), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/files/"+fileID, bob, nil, sync...), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/chats/"+chatID, bob, nil, sync...), 404, "not_found")
	for _, path := range []string{"/api/v1/orgs/" + acme + "/members", "/api/v1/orgs/" + bobco + "/members", "/api/v1/spaces/" + bobPersonal + "/members", "/api/v1/spaces/" + bobcoSpace + "/members"} {
		r := s.do("GET", path, bob, nil, sync...)
		expect(t, r, 200, "")
		if got := string(r.body); strings.Contains(got, adaID) || strings.Contains(got, "Quixotic") || strings.Contains(got, "ada.erasure") {
			t.Fatalf("%s still shows Ada: %s", path, got)
		}
	}
	r = s.do("GET", "/api/v1/orgs/"+pending+"/invitations", bob, nil, sync...)
	expect(t, r, 200, "")
	if strings.Contains(string(r.body), pendingInvitation) {
		t.Fatalf("the invitation to the erased email is still pending: %s", r.body)
	}
	waitFor(t, 30*time.Second, "her blobs leave the bucket", func() bool { return blobCount(t, dataDir) == blobsBefore-1 })
	waitFor(t, 30*time.Second, "her search entries leave the index", func() bool {
		return len(searchTenant(t, s, db, adaID, "quagmirelike"))+len(searchTenant(t, s, db, adaID, "ocelotish Zanzibarian marmalade Quillfeather")) == 0
	})
	var docs int
	waitFor(t, 30*time.Second, "her search documents are dropped", func() bool {
		if err := db.QueryRow(ctx, `SELECT count(*) FROM search_docs WHERE space_id = $1 OR doc_id IN ($2, $3)`, personal, noteID, fileID).Scan(&docs); err != nil {
			t.Fatal(err)
		}
		return docs == 0
	})

	// The users read model keeps a tombstone without her name or email.
	var (
		gotEmail, gotName string
		erasedAt          *time.Time
	)
	waitFor(t, 10*time.Second, "the users read model marks her erased", func() bool {
		if err := db.QueryRow(ctx, `SELECT email, name, erased_at FROM users WHERE id = $1`, adaID).Scan(&gotEmail, &gotName, &erasedAt); err != nil {
			t.Fatal(err)
		}
		return erasedAt != nil
	})
	if gotEmail != domain.ErasedValue || gotName != domain.ErasedValue {
		t.Fatalf("users row = %q %q, want %q", gotEmail, gotName, domain.ErasedValue)
	}
	// No plaintext of hers anywhere in the database: events (data and metadata), read models,
	// reservations, work queues.
	for _, needle := range []string{email, "ada.erasure", name, "Quixotic", title, "Zephyrine", "xylophonist", "quagmirelike", "marmalade", "Quincunx", "Quillfeather", "Ada's laptop", "Zanzibarian", "ocelotish", digest} {
		if found := plaintextIn(t, db, needle); len(found) > 0 {
			t.Errorf("%q is still stored in %v", needle, found)
		}
	}
	waitFor(t, 10*time.Second, "her platform role is revoked", func() bool {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM platform_roles WHERE user_id = $1`, adaID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	var keyLeft []byte
	var keyErased *time.Time
	if err := db.QueryRow(ctx, `SELECT key, erased_at FROM subject_keys WHERE subject_id = $1`, adaID).Scan(&keyLeft, &keyErased); err != nil || keyLeft != nil || keyErased == nil {
		t.Fatalf("her key: %x erased at %v (%v), want destroyed", keyLeft, keyErased, err)
	}

	// History shows "[erased]" where her data was: her own stream, her note's text, the invitation's
	// email in Bobco's history (which Bob still reads).
	recs, err := s.app.Store.ReadStream(ctx, uuid.MustParse(adaID), 0)
	if err != nil {
		t.Fatal(err)
	}
	if reg := recs[0].Event.(user.Registered); reg.Email != domain.ErasedValue || reg.Name != domain.ErasedValue || reg.PasswordHash != domain.ErasedValue {
		t.Fatalf("user.registered after erasure = %+v", reg)
	}
	if e, ok := recs[len(recs)-1].Event.(user.Erased); !ok || len(e.InvitationIDs) != 2 {
		t.Fatalf("last event of her stream = %#v, want user.erased naming both invitations", recs[len(recs)-1].Event)
	}
	recs, err = s.app.Store.ReadStream(ctx, uuid.MustParse(noteID), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, e := recs[0].Event.(note.Created), recs[1].Event.(note.Edited)
	if c.Title != domain.ErasedValue || c.Body != domain.ErasedValue || e.Title != domain.ErasedValue || e.Body != domain.ErasedValue {
		t.Fatalf("note history after erasure: %+v %+v", c, e)
	}
	for _, id := range []string{noteID, adaID, fileID} {
		code, out := audit("replay", id)
		if code != 0 || !strings.Contains(out, domain.ErasedValue) || strings.Contains(out, "Zephyrine") || strings.Contains(out, "marmalade") || strings.Contains(out, "Quixotic") {
			t.Fatalf("atlas replay %s after erasure: %d %s", id, code, out)
		}
	}
	r = s.do("GET", "/api/v1/orgs/"+bobco+"/history", bob, nil)
	expect(t, r, 200, "")
	if !strings.Contains(string(r.body), `"email":"[erased]"`) || strings.Contains(string(r.body), "ada.erasure") {
		t.Fatalf("Bobco's history: %s", r.body)
	}
	recs, err = s.app.Store.ReadStream(ctx, uuid.MustParse(pending), 0)
	if err != nil {
		t.Fatal(err)
	}
	if inv := recs[1].Event.(org.MemberInvited); inv.Email != domain.ErasedValue {
		t.Fatalf("the pending invitation's email after erasure = %q", inv.Email)
	}

	// The hash chain of every stream she touched still holds.
	var streams []uuid.UUID
	rows, err := db.Query(ctx, `SELECT DISTINCT stream_id FROM events
		WHERE stream_id IN ($1, $2, $3, $4) OR metadata->>'actor_id' = $1::text OR data::text LIKE '%' || $1::text || '%'`,
		adaID, noteID, fileID, personal)
	if err != nil {
		t.Fatal(err)
	}
	if streams, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID]); err != nil || len(streams) < 8 {
		t.Fatalf("%d streams refer to her (%v)", len(streams), err)
	}
	for _, id := range streams {
		if broken, err := eventstore.VerifyStream(ctx, db, id); err != nil || broken != 0 {
			t.Errorf("stream %s: chain broken at version %d (%v)", id, broken, err)
		}
	}

	// And the whole log, seals included, verifies.
	if code, out := audit("audit", "seal"); code != 0 {
		t.Fatalf("audit seal: %d %s", code, out)
	}
	if code, out := audit("audit", "verify"); code != 0 || !strings.Contains(out, "the event log is intact") {
		t.Fatalf("audit verify after erasure: %d %s", code, out)
	}

	// The address can register again: a new user with a new id and a new key.
	again, againID, _ := s.register(email, "Someone New")
	if againID == adaID {
		t.Fatal("re-registration reused the erased id")
	}
	r = s.do("GET", "/api/v1/me", again, nil)
	expect(t, r, 200, "")
	if r.json(t)["email"] != email {
		t.Fatalf("me = %s", r.body)
	}
	waitFor(t, 10*time.Second, "the new user is in the users read model", func() bool {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM users WHERE id = $1 AND email = $2 AND erased_at IS NULL`, againID, email).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
}

// A crash between the erasure's commit and the destruction of the key cannot leave the person
// readable: the erasure projector destroys the key from the event, and the event alone already makes
// every credential of theirs fail.
func TestErasureKeyIsDestroyedFromTheEventAfterACrash(t *testing.T) {
	s := startServer(t)
	db := ownerPool(t, s)
	ctx := context.Background()
	token, id, _ := s.register("crash.erasure@example.com", "Crash Window")
	uid := uuid.MustParse(id)
	st, err := s.app.Commands.User(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	// The command's append, as if the process stopped right after it committed: no key destroyed,
	// no session deleted.
	tenant := uid
	evs, err := user.Decide(st, user.Erase{Actor: uid, PasswordVerified: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.app.Store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamType: user.StreamType,
		StreamID: uid, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}}}); err != nil {
		t.Fatal(err)
	}
	expect(t, s.do("GET", "/api/v1/me", token, nil), 401, "unauthenticated")
	waitFor(t, 10*time.Second, "the erasure projector destroys the key", func() bool {
		var erased bool
		if err := db.QueryRow(ctx, `SELECT key IS NULL AND erased_at IS NOT NULL FROM subject_keys WHERE subject_id = $1`, uid).Scan(&erased); err != nil {
			t.Fatal(err)
		}
		return erased
	})
	recs, err := s.app.Store.ReadStream(ctx, uid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if reg := recs[0].Event.(user.Registered); reg.Email != domain.ErasedValue || reg.Name != domain.ErasedValue {
		t.Fatalf("after the projector ran: %+v", reg)
	}
}
