package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/projections"
)

// A rebuild interrupted half-way (the CLI killed) leaves a consistent prefix in the copies and the
// live table untouched; running the command again resumes it and swaps in the same rows.
func TestRebuildResumesAfterInterruption(t *testing.T) {
	app, env := openApp(t, map[string]string{"ATLAS_PROJECTOR_BATCH": "1"})
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	reg, err := app.Commands.Register(ctx, commands.Context{}, "r@example.com", "R", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	var last commands.SpaceResult
	for i := 0; i < 40; i++ {
		if last, err = app.Commands.CreateSpace(ctx, commands.Context{Actor: reg.User.ID}, nil, "S", fmt.Sprintf("s%d", i), "private"); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Runtime.Run(runCtx) }()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := app.Runtime.WaitFor(wctx, last.Position, "spaces"); err != nil {
		t.Fatal(err)
	}
	want := dump(t, app.ProjectorPool, "spaces")
	policies := policyText(t, app)

	// Start a rebuild and interrupt it part-way.
	if _, err := app.Runtime.StartRebuild(ctx, "spaces"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sts, err := app.Runtime.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := statusOf(sts, "spaces").Rebuild; r != nil && r.Position.GlobalPosition > 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rebuild made no progress")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	<-done
	sts, err := app.Runtime.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := statusOf(sts, "spaces"); s.Status != "rebuilding" || s.Rebuild == nil || s.Rebuild.EventsDone >= s.Rebuild.EventsTotal {
		t.Fatalf("after the interruption: %+v, want rebuilding and behind", s)
	}
	if got := dump(t, app.ProjectorPool, "rebuild_spaces.spaces"); got == want {
		t.Fatal("the interrupted rebuild already had every row; the test proves nothing")
	}
	if got := dump(t, app.ProjectorPool, "spaces"); got != want {
		t.Fatalf("the live table changed during the rebuild:\n%s\nwant:\n%s", got, want)
	}
	// The copies are filled with COPY, so without row-level security until the swap: the API's role
	// must not reach them at all.
	if _, err := app.Pool.Exec(ctx, `SELECT 1 FROM rebuild_spaces.spaces LIMIT 1`); err == nil || !strings.Contains(err.Error(), "permission denied for schema") {
		t.Fatalf("the API role reading the rebuild's copy: %v, want permission denied for the schema", err)
	}

	var out bytes.Buffer
	if code := run([]string{"projections", "rebuild", "--quiet", "spaces"}, getenv, &out, io.Discard); code != 0 {
		t.Fatalf("rebuild exited %d: %s", code, out.String())
	}
	if !strings.Contains(out.String(), "resuming") || !strings.Contains(out.String(), "rebuilt spaces") {
		t.Fatalf("rebuild output: %s", out.String())
	}
	if got := dump(t, app.ProjectorPool, "spaces"); got != want {
		t.Fatalf("after the resumed rebuild:\n%s\nwant:\n%s", got, want)
	}
	var secured bool
	if err := app.OwnerPool.QueryRow(ctx, `SELECT bool_and(relrowsecurity AND relforcerowsecurity) FROM pg_class
		WHERE oid IN ('public.spaces'::regclass, 'public.space_members'::regclass)`).Scan(&secured); err != nil || !secured {
		t.Fatalf("row-level security on the swapped-in tables: %v (%v)", secured, err)
	}
	// Every row-level security policy is as before: those of the swapped tables, and those of other
	// tables that refer to them (users' refers to space_members).
	if got := policyText(t, app); got != policies {
		t.Fatalf("policies after the rebuild:\n%s\nwant:\n%s", got, policies)
	}
	var refs int
	if err := app.OwnerPool.QueryRow(ctx, `SELECT count(*) FROM pg_policy pol JOIN pg_depend d ON d.objid = pol.oid
		JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE d.classid = 'pg_policy'::regclass AND n.nspname <> 'public'`).Scan(&refs); err != nil || refs != 0 {
		t.Fatalf("%d policies refer to tables outside public (%v)", refs, err)
	}
}

// policyText lists every row-level security policy of the public schema as text.
func policyText(t *testing.T, app *App) string {
	t.Helper()
	var out string
	err := app.OwnerPool.QueryRow(context.Background(), `SELECT string_agg(tablename || ' ' || policyname || ' ' || cmd || ' ' ||
		array_to_string(roles, ',') || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, ''), E'\n' ORDER BY tablename, policyname)
		FROM pg_policies WHERE schemaname = 'public'`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func statusOf(sts []projections.Status, name string) projections.Status {
	for _, s := range sts {
		if s.Name == name {
			return s
		}
	}
	return projections.Status{}
}
