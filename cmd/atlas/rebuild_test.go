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
)

// A rebuild interrupted half-way (the CLI killed) leaves a consistent prefix; running the command
// again resumes it and ends with the same rows as before the rebuild.
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

	// Start a rebuild and interrupt it part-way.
	if _, err := app.Runtime.StartRebuild(ctx, "spaces"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := app.Runtime.Checkpoint(ctx, "spaces")
		if err != nil {
			t.Fatal(err)
		}
		if cp.GlobalPosition > 5 {
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
	for _, s := range sts {
		if s.Name == "spaces" && (s.Status != "rebuilding" || s.LagEvents == 0) {
			t.Fatalf("after the interruption: %+v, want rebuilding and behind", s)
		}
	}
	if got := dump(t, app.ProjectorPool, "spaces"); got == want {
		t.Fatal("the interrupted rebuild already had every row; the test proves nothing")
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
}
