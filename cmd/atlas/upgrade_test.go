package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/projections"
)

// An upgrade with a schema change, end to end: the database is as the previous release left it
// (spaces projector version 1, its table without the description column, and space.created.v1 events
// in the log); the new release starts, builds version 2 of the spaces read model beside the old one
// from every event, old ones upcast, while clients keep reading; no request fails, and after the
// swap the new column is there with the right values.
func TestUpgradeRebuildsWhileServing(t *testing.T) {
	s := startServerWith(t, map[string]string{"ATLAS_PROJECTOR_BATCH": "10"})
	ctx := context.Background()
	token, userID, _ := s.register("upgrade@test.test", "Upgrader")
	uid := uuid.MustParse(userID)
	cc := commands.Context{Actor: uid}

	// Spaces of the current release, some with a description...
	var described uuid.UUID
	var last commands.SpaceResult
	var err error
	for i := range 400 {
		desc := ""
		if i%2 == 0 {
			desc = fmt.Sprintf("description %d", i)
		}
		if last, err = s.app.Commands.CreateDescribedSpace(ctx, cc, nil, "S", fmt.Sprintf("s%d", i), "private", desc); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			described = last.Space.ID
		}
	}
	// ... and spaces created by the previous release: space.created.v1 events, without a description.
	owner := mustPool(t, s.dbURL)
	legacy := uuid.Must(uuid.NewV7())
	for i := range 20 {
		id := legacy
		if i > 0 {
			id = uuid.Must(uuid.NewV7())
		}
		if _, err := owner.Exec(ctx, `INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type,
			schema_version, data, metadata, tenant_id, recorded_at)
			VALUES ('space', $1, 1, $2, 'space.created', 1, $3, $4, $5, now())`,
			id, uuid.New(), fmt.Sprintf(`{"space_id":%q,"owner_user_id":%q,"personal":false,"name":"Old %d","slug":"old-%d","visibility":"private","created_at":"2025-01-02T03:04:05Z"}`, id, uid, i, i),
			fmt.Sprintf(`{"actor_id":%q,"tenant_id":%q}`, uid, uid), uid); err != nil {
			t.Fatal(err)
		}
	}
	s.app.Signal.Notify(0)
	r := s.do("GET", "/api/v1/spaces/"+legacy.String(), token, nil)
	waitFor(t, 20*time.Second, "the legacy space is readable", func() bool {
		r = s.do("GET", "/api/v1/spaces/"+legacy.String(), token, nil)
		return r.status == 200
	})
	if m := r.json(t); m["description"] != "" || m["name"] != "Old 0" {
		t.Fatalf("legacy space %s", r.body)
	}

	// The database as the previous release left it.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	var group string
	if err := owner.QueryRow(ctx, `SELECT live_group FROM projector_status WHERE name = 'spaces'`).Scan(&group); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`ALTER TABLE spaces DROP COLUMN description`,
		`UPDATE projection_offsets SET consumer_group = 'spaces_v1' WHERE consumer_group = '` + group + `'`,
		`UPDATE projector_status SET version = 1, live_group = 'spaces_v1', generation = 0 WHERE name = 'spaces'`,
	} {
		if _, err := owner.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}

	// The new release starts on that database and rebuilds while clients read. A transaction holding a
	// share lock on the live table keeps the swap waiting (it yields after its lock timeout and tries
	// again) until enough reads have run during the rebuild, whatever the machine's speed.
	hold, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `LOCK TABLE spaces IN ACCESS SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	next := startServerWith(t, s.env)
	var requests, duringRebuild, failures atomic.Int64
	var firstFailure atomic.Value
	var rebuilding atomic.Bool
	rebuilding.Store(true)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	paths := []string{"/api/v1/spaces?limit=200", "/api/v1/spaces/" + described.String(), "/api/v1/spaces/" + legacy.String(),
		"/api/v1/spaces/" + described.String() + "/members"}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Paced below the per-user rate limit (50 requests/s): 4 readers at 10/s.
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				was := rebuilding.Load()
				res := next.do("GET", paths[(w+i)%len(paths)], token, nil)
				requests.Add(1)
				if was {
					duringRebuild.Add(1)
				}
				if res.status != 200 {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %s", paths[(w+i)%len(paths)], res.status, res.body))
				}
			}
		}()
	}
	waitFor(t, 60*time.Second, "reads during the rebuild", func() bool { return duringRebuild.Load() >= 20 })
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var st projections.Status
	waitFor(t, 60*time.Second, "spaces version 2 live", func() bool {
		sts, err := next.app.Runtime.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st = statusOf(sts, "spaces")
		return st.Version == 2 && st.Status == "live"
	})
	rebuilding.Store(false)
	waitFor(t, 10*time.Second, "reads after the swap", func() bool { return requests.Load() > duringRebuild.Load()+8 })
	close(stop)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed during the upgrade; first: %v", f, requests.Load(), firstFailure.Load())
	}
	t.Logf("%d requests, %d of them during the rebuild, none failed; live group %s", requests.Load(), duringRebuild.Load(), st.ConsumerGroup)

	if m := next.do("GET", "/api/v1/spaces/"+described.String(), token, nil).json(t); m["description"] != "description 0" {
		t.Fatalf("after the upgrade the described space reads %v", m)
	}
	if m := next.do("GET", "/api/v1/spaces/"+legacy.String(), token, nil).json(t); m["description"] != "" || m["name"] != "Old 0" {
		t.Fatalf("after the upgrade the legacy space reads %v", m)
	}
	var n int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'
		AND table_name = 'spaces' AND column_name = 'description'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the spaces table lacks the description column (%v)", err)
	}
	// The new version's handlers keep it current.
	pos := next.do("PATCH", "/api/v1/spaces/"+legacy.String(), token, map[string]string{"description": "now described"}).json(t)["position"].(string)
	if m := next.do("GET", "/api/v1/spaces/"+legacy.String(), token, nil, "X-Consistency-Token", pos).json(t); m["description"] != "now described" {
		t.Fatalf("after a PATCH the legacy space reads %v", m)
	}
}

func mustPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
