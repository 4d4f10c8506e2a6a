package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain/platform"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/migrations"
)

// exitBroken is `atlas audit verify`'s exit status when the log is not intact (1 means it could not
// be checked, 2 a usage error).
const exitBroken = 3

// brokenLog is the error auditCmd returns for a log that failed verification.
type brokenLog struct{ first eventstore.Broken }

func (e brokenLog) Error() string {
	return fmt.Sprintf("the event log is not intact: first broken link at position %d: %s", e.first.Position, e.first.Reason)
}

// core is the part of the app the offline commands need: the migrated database, the API role's pool
// and the event store. It starts no search engine and no projector.
type core struct {
	pool  *pgxpool.Pool
	store *eventstore.Store
}

func openCore(ctx context.Context, cfg Config, log *slog.Logger) (*core, error) {
	if err := migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if _, err := migrations.Up(ctx, cfg.DatabaseURL, log); err != nil {
		return nil, err
	}
	pool, err := openPool(ctx, cfg.DatabaseURL, migrations.APIRole, 4)
	if err != nil {
		return nil, err
	}
	registry := eventstore.NewRegistry()
	commands.RegisterEvents(registry)
	keys := eventstore.NewSubjectKeys(pool, cfg.KeyCacheTTL)
	return &core{pool: pool, store: eventstore.New(pool, registry, keys, eventstore.Options{})}, nil
}

func (c *core) Close() { c.pool.Close() }

// auditCmd runs `atlas audit verify [--json] [--anchor SEQ:HASH]...` and `atlas audit seal`.
func auditCmd(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("audit: verify [--json] or seal")
	}
	asJSON := false
	var anchors []eventstore.Anchor
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case (a == "--json" || a == "-json") && args[0] == "verify":
			asJSON = true
		case (a == "--anchor" || a == "-anchor") && args[0] == "verify" && i+1 < len(args):
			an, err := eventstore.ParseAnchor(args[i+1])
			if err != nil {
				return usageError(err.Error())
			}
			anchors = append(anchors, an)
			i++
		default:
			return usageError(fmt.Sprintf("audit %s: unknown argument %q", args[0], a))
		}
	}
	quiet := warnLogger(stderr)
	c, err := openCore(ctx, cfg, quiet)
	if err != nil {
		return err
	}
	defer c.Close()
	switch args[0] {
	case "seal":
		n, err := (&eventstore.Sealer{Pool: c.pool}).SealOnce(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d seals\n", n)
		return nil
	case "verify":
		start := time.Now()
		last := time.Time{}
		rep, err := eventstore.VerifyWith(ctx, c.pool, eventstore.VerifyOptions{Anchors: anchors, Progress: func(phase string, n int64) {
			if time.Since(last) >= time.Second {
				last = time.Now()
				fmt.Fprintf(stderr, "verify: %s: %d events checked\n", phase, n)
			}
		}})
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "verify: done in %s\n", time.Since(start).Round(time.Millisecond))
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stdout, "checked %d events in %d streams and %d seals (sealed through position %d; %d later events checked by their stream chains)\n",
				rep.CheckedEvents, rep.CheckedStreams, rep.CheckedSeals, rep.SealedThrough, rep.UnsealedEvents)
			if rep.LastSeal != nil {
				fmt.Fprintf(stdout, "last seal: %d, through position %d, sealed at %s (anchor for a later check: --anchor %s)\n",
					rep.LastSeal.Seq, rep.LastSeal.ToPosition, rep.LastSeal.SealedAt.Format(time.RFC3339), rep.LastSeal.Anchor)
			}
			if rep.OldestUnsealedAt != nil {
				fmt.Fprintf(stdout, "oldest unsealed event recorded at %s\n", rep.OldestUnsealedAt.Format(time.RFC3339))
			}
			if rep.OK {
				fmt.Fprintln(stdout, "the event log is intact")
			}
			for _, b := range rep.Broken {
				fmt.Fprintf(stdout, "BROKEN %s at position %d: %s\n", b.Kind, b.Position, b.Reason)
			}
			if int64(len(rep.Broken)) < rep.BrokenCount {
				fmt.Fprintf(stdout, "... and %d more broken links\n", rep.BrokenCount-int64(len(rep.Broken)))
			}
		}
		if !rep.OK {
			return brokenLog{first: *rep.FirstBroken}
		}
		return nil
	default:
		return usageError(fmt.Sprintf("audit: unknown subcommand %q", args[0]))
	}
}

// adminCmd runs `atlas admin grant|revoke EMAIL ROLE` and `atlas admin roles`. Grants and revocations
// are events of the platform stream (actor: none, request id "cli"), so they are audited like any
// change; the API sees them once the platform projector has applied them (milliseconds).
func adminCmd(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("admin: grant EMAIL ROLE, revoke EMAIL ROLE or roles")
	}
	switch {
	case (args[0] == "grant" || args[0] == "revoke") && len(args) != 3:
		return usageError(fmt.Sprintf("admin %s: EMAIL ROLE (ROLE: %s)", args[0], strings.Join(platform.Roles, " or ")))
	case (args[0] == "grant" || args[0] == "revoke") && !slices.Contains(platform.Roles, args[2]):
		return usageError(fmt.Sprintf("admin %s: unknown role %q (ROLE: %s)", args[0], args[2], strings.Join(platform.Roles, " or ")))
	case args[0] == "roles" && len(args) != 1:
		return usageError("admin roles: no arguments")
	case args[0] != "grant" && args[0] != "revoke" && args[0] != "roles":
		return usageError(fmt.Sprintf("admin: unknown subcommand %q", args[0]))
	}
	quiet := warnLogger(stderr)
	c, err := openCore(ctx, cfg, quiet)
	if err != nil {
		return err
	}
	defer c.Close()
	h := commands.New(commands.Config{Store: c.store, Sessions: commands.Sessions{Pool: c.pool}})
	cc := commands.Context{RequestID: "cli"}
	switch args[0] {
	case "grant":
		r, err := h.GrantPlatformRole(ctx, cc, args[1], args[2])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "granted %s to %s (user %s) at position %s\n", args[2], args[1], r.UserID, r.Position)
	case "revoke":
		r, err := h.RevokePlatformRole(ctx, cc, args[1], args[2])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s from %s (user %s) at position %s\n", args[2], args[1], r.UserID, r.Position)
	case "roles":
		st, err := h.Platform(ctx)
		if err != nil {
			return err
		}
		users := make([]uuid.UUID, 0, len(st.Holders))
		for u := range st.Holders {
			users = append(users, u)
		}
		slices.SortFunc(users, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		for _, u := range users {
			fmt.Fprintf(stdout, "%s\t%s\n", u, strings.Join(st.Holders[u], ","))
		}
	}
	return nil
}
