package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/commands"
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
