package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// superuser connects to the test database as the role that ran the migrations (a superuser), which
// can do what no application role can: switch the triggers off and rewrite the log.
func superuser(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestAuditVerifyCLI(t *testing.T) {
	app, env := openApp(t, nil)
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	reg, err := app.Commands.Register(ctx, commands.Context{}, "v@example.com", "V", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := app.Commands.CreateSpace(ctx, commands.Context{Actor: reg.User.ID}, nil, "S", fmt.Sprintf("s%d", i), "private"); err != nil {
			t.Fatal(err)
		}
	}
	runCLI := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(args, getenv, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := runCLI("audit", "seal"); code != 0 || !strings.Contains(out, "wrote 1 seals") {
		t.Fatalf("seal: %d %s %s", code, out, errOut)
	}
	code, out, errOut := runCLI("audit", "verify")
	if code != 0 || !strings.Contains(out, "the event log is intact") || !strings.Contains(out, "checked 7 events") ||
		!strings.Contains(errOut, "verify: done") {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}
	// The anchor printed for a later check verifies.
	m := regexp.MustCompile(`--anchor (\d+:[0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no anchor in %s", out)
	}
	if code, out, _ := runCLI("audit", "verify", "--anchor", m[1]); code != 0 {
		t.Fatalf("verify with the anchor: %d %s", code, out)
	}
	if code, _, _ := runCLI("audit", "verify", "--anchor", "1:beef"); code != 2 {
		t.Fatalf("a malformed anchor exited %d", code)
	}
	// One more event, unsealed, then tampered with.
	if _, err := app.Commands.CreateSpace(ctx, commands.Context{Actor: reg.User.ID}, nil, "S", "late", "private"); err != nil {
		t.Fatal(err)
	}
	conn := superuser(t, env["DATABASE_URL"])
	if _, err := conn.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE events SET data = jsonb_set(data, '{name}', '"forged"') WHERE global_position = (SELECT max(global_position) FROM events);
		COMMIT`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI("audit", "verify", "--json")
	var rep struct {
		OK          bool `json:"ok"`
		FirstBroken struct {
			Kind     string `json:"kind"`
			Position int64  `json:"position"`
		} `json:"first_broken"`
		UnsealedEvents int64 `json:"unsealed_events"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if code != exitBroken || rep.OK || rep.FirstBroken.Kind != "edited" || rep.FirstBroken.Position != 8 || rep.UnsealedEvents != 1 {
		t.Fatalf("verify after tampering: exit %d, %s", code, out)
	}
	if code, _, _ := runCLI("audit", "verify", "--bogus"); code != 2 {
		t.Fatalf("bad argument: exit %d", code)
	}
}

func TestReplay(t *testing.T) {
	app, env := openApp(t, nil)
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	reg, err := app.Commands.Register(ctx, commands.Context{}, "replay@example.com", "R", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := app.Commands.CreateSpace(ctx, commands.Context{Actor: reg.User.ID}, nil, "Before", "before", "private")
	if err != nil {
		t.Fatal(err)
	}
	between := time.Now()
	name := "After"
	if _, err := app.Commands.UpdateSpace(ctx, commands.Context{Actor: reg.User.ID}, sp.Space.ID, space.Update{Actor: reg.User.ID, Name: &name}); err != nil {
		t.Fatal(err)
	}
	type replayOut struct {
		StreamType string `json:"stream_type"`
		Version    int64  `json:"version"`
		Events     []struct {
			Type string `json:"type"`
		} `json:"events"`
		State map[string]any `json:"state"`
	}
	replay := func(args ...string) (int, replayOut, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"replay"}, args...), getenv, &out, &errOut)
		var r replayOut
		if code == 0 {
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
		}
		return code, r, errOut.String()
	}
	code, now, errOut := replay(sp.Space.ID.String())
	if code != 0 || now.StreamType != "space" || now.Version != 2 || len(now.Events) != 2 || now.State["Name"] != "After" {
		t.Fatalf("replay now: %d %+v %s", code, now, errOut)
	}
	code, then, _ := replay(sp.Space.ID.String(), "--at", between.UTC().Format(time.RFC3339Nano))
	if code != 0 || then.Version != 1 || len(then.Events) != 1 || then.Events[0].Type != "space.created.v2" || then.State["Name"] != "Before" {
		t.Fatalf("replay then: %d %+v", code, then)
	}
	// The user's stream: another aggregate type.
	code, u, _ := replay(reg.User.ID.String())
	if code != 0 || u.StreamType != "user" || u.Version != 1 {
		t.Fatalf("replay user: %d %+v", code, u)
	}
	for _, bad := range [][]string{{}, {"nope"}, {sp.Space.ID.String(), "--at", "yesterday"}} {
		if code, _, _ := replay(bad...); code != 2 {
			t.Errorf("replay %v exited %d, want 2", bad, code)
		}
	}
	if code, _, _ := replay(uuid.NewString()); code != 1 {
		t.Errorf("replay of an unknown stream exited %d, want 1", code)
	}
}

// Every aggregate type has a replayer: an event's stream type is its name's first part.
func TestReplayCoversEveryAggregate(t *testing.T) {
	reg := eventstore.NewRegistry()
	commands.RegisterEvents(reg)
	for _, name := range reg.Names() {
		typ, _, _ := strings.Cut(name, ".")
		if replayers[typ] == nil {
			t.Errorf("%s: no replayer for stream type %q in cmd/atlas/replay.go", name, typ)
		}
	}
}
