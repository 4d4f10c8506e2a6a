// Command atlas is the one Atlas binary: `atlas serve` runs the API and the projectors, `atlas migrate`
// applies the schema, `atlas projections status|rebuild` administers read models.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/atlas-workspace/atlas/migrations"
	"github.com/atlas-workspace/atlas/projections"
)

const usage = `usage: atlas <command> [arguments]

commands:
  serve                        run the HTTP API and every projector (migrates first)
  worker                       run background task attempts only (no HTTP API, no projectors)
  migrate                      apply the database migrations and exit
  projections status           print each projector's status, checkpoint and lag
  projections rebuild NAME     rebuild a projector's read model from the start of the log
                               (resumes an interrupted rebuild; --restart starts over)
  search reindex [--quiet]     rebuild the search index from the event log, with progress
  audit verify [--json] [--anchor SEQ:HASH]
                               check every stream's hash chain and the chain of seals (and that seal
                               SEQ still has HASH); exit 0 when intact, 3 when a link is broken, 1 on error
  audit seal                   write the seals the log allows now (atlas serve does it periodically)
  admin grant EMAIL ROLE       give a user a platform role: admin (admin API) or auditor (audit/verify)
  admin revoke EMAIL ROLE      take it back
  admin roles                  list who holds which platform role
  replay STREAM_ID [--at TIME] print a stream's events up to TIME (RFC 3339; default now) and the
                               aggregate state rebuilt from them, as JSON
  recover [--quiet]            after restoring a backup: check transaction-id continuity, verify
                               the log, rebuild every read model and the search index from it
  config                       print the configuration variables in effect and their defaults
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	switch args[0] {
	case "serve":
		err = serve(ctx, cfg, log)
	case "worker":
		err = work(ctx, cfg, log)
	case "migrate":
		if err = migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err == nil {
			_, err = migrations.Up(ctx, cfg.DatabaseURL, log)
		}
	case "projections":
		err = projectionsCmd(ctx, cfg, args[1:], stdout, stderr)
	case "search":
		err = searchCmd(ctx, cfg, args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(ctx, cfg, args[1:], stdout, stderr)
	case "admin":
		err = adminCmd(ctx, cfg, args[1:], stdout, stderr)
	case "replay":
		err = replayCmd(ctx, cfg, args[1:], stdout, stderr)
	case "recover":
		err = recoverCmd(ctx, cfg, args[1:], stdout, stderr)
	case "config":
		printConfig(getenv)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "atlas: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "atlas:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		var bl brokenLog
		if errors.As(err, &bl) {
			return exitBroken
		}
		return 1
	}
	return 0
}

type usageError string

func (e usageError) Error() string { return string(e) }

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	app, err := Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	return app.Serve(ctx, ln)
}

func work(ctx context.Context, cfg Config, log *slog.Logger) error {
	app, err := Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()
	return app.Work(ctx)
}

func projectionsCmd(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError("projections: status or rebuild NAME")
	}
	quiet := warnLogger(stderr)
	app, err := Open(ctx, cfg, quiet)
	if err != nil {
		return err
	}
	defer app.Close()
	switch args[0] {
	case "status":
		sts, err := app.Runtime.Statuses(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tVERSION\tSTATUS\tCHECKPOINT\tLAG_EVENTS\tLAG_SECONDS\tREBUILD\tLAST_ERROR")
		for _, s := range sts {
			lastErr := ""
			if s.LastError != nil {
				lastErr = *s.LastError
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%.3f\t%s\t%s\n", s.Name, s.Version, s.Status, s.Position, s.LagEvents, s.LagSeconds,
				rebuildProgress(s.Rebuild), lastErr)
		}
		return w.Flush()
	case "rebuild":
		fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
		fs.SetOutput(stderr)
		restart := fs.Bool("restart", false, "start over even if a rebuild is in progress")
		quietBar := fs.Bool("quiet", false, "no progress bar")
		// Flags may come before or after NAME.
		var flags, names []string
		for _, a := range args[1:] {
			if strings.HasPrefix(a, "-") {
				flags = append(flags, a)
			} else {
				names = append(names, a)
			}
		}
		if err := fs.Parse(append(flags, names...)); err != nil {
			return usageError(err.Error())
		}
		if fs.NArg() != 1 {
			return usageError("projections rebuild: exactly one projector NAME")
		}
		return rebuild(ctx, app, fs.Arg(0), *restart, *quietBar, stderr, stdout)
	default:
		return usageError(fmt.Sprintf("projections: unknown subcommand %q", args[0]))
	}
}

// rebuild rebuilds a projector with a progress bar (events by global position, rate, ETA): the log is
// replayed into new copies of its tables while the live ones keep serving, and the copies are swapped
// in when they have caught up (projections/rebuild.go). An interrupted rebuild is resumed: its
// checkpoint and the rows written so far committed together.
func rebuild(ctx context.Context, app *App, name string, restart, quiet bool, barOut, out io.Writer) error {
	rt := app.Runtime
	if rt.Projector(name) == nil {
		return usageError(fmt.Sprintf("unknown projector %q (known: %v)", name, rt.Names()))
	}
	_, st, err := rt.FinishRebuildIfCaughtUp(ctx, name)
	if err != nil {
		return err
	}
	target := st.RebuildTarget
	how := "into new tables while the live ones serve"
	if rt.Projector(name).InPlaceRebuild {
		how = "in place"
	}
	if st.Status != "rebuilding" || restart {
		if target, err = rt.StartRebuild(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(out, "rebuilding %s %s, from the start of the log up to position %s\n", name, how, target)
	} else {
		fmt.Fprintf(out, "resuming the rebuild of %s (%s) at %s, up to %s\n", name, how, st.Rebuild.Position, target)
	}
	start := time.Now()
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rt.RunOnly(runCtx, name)
	}()
	defer func() { stopRun(); <-done }()

	max := target.GlobalPosition
	if max < 1 {
		max = 1
	}
	bar := progressbar.NewOptions64(max, progressbar.OptionSetWriter(barOut), progressbar.OptionSetDescription(name),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
		progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetVisibility(!quiet), progressbar.OptionFullWidth())
	for {
		live, s, err := rt.FinishRebuildIfCaughtUp(ctx, name)
		if err != nil {
			return err
		}
		if s.Rebuild != nil {
			_ = bar.Set64(min(s.Rebuild.Position.GlobalPosition, max))
		}
		if live {
			_ = bar.Finish()
			el := time.Since(start)
			fmt.Fprintf(out, "\nrebuilt %s (version %d, consumer group %s): up to position %s in %s (%.0f events/s by position)\n",
				name, s.Version, s.ConsumerGroup, s.Position, el.Round(time.Millisecond), float64(s.Position.GlobalPosition)/el.Seconds())
			return nil
		}
		if s.Status == "failed" {
			msg := ""
			if s.LastError != nil {
				msg = *s.LastError
			}
			return fmt.Errorf("rebuild of %s failed at event %v: %s", name, deref(s.FailedPosition), msg)
		}
		select {
		case <-ctx.Done():
			at := s.Position
			if s.Rebuild != nil {
				at = s.Rebuild.Position
			}
			return fmt.Errorf("rebuild of %s interrupted at %s; run it again to resume", name, at)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rebuildProgress is a rebuild's progress in one column: "-" when none runs, else the version being
// built, events done of total, the rate and the time left.
func rebuildProgress(r *projections.Rebuild) string {
	if r == nil {
		return "-"
	}
	pct := 100.0
	if r.EventsTotal > 0 {
		pct = 100 * float64(r.EventsDone) / float64(r.EventsTotal)
	}
	out := fmt.Sprintf("v%d %d/%d (%.0f%%) %.0f/s", r.Version, r.EventsDone, r.EventsTotal, pct, r.Rate)
	if r.ETASeconds != nil {
		out += fmt.Sprintf(" eta %s", (time.Duration(*r.ETASeconds) * time.Second).Round(time.Second))
	}
	return out
}

func deref(p *int64) any {
	if p == nil {
		return "?"
	}
	return *p
}

// searchCmd runs `atlas search reindex [--quiet]`: it rebuilds the search projector from the log
// (every live document becomes a work item again; deleted ones are removed from the index) and then
// indexes until no work item is left, with progress.
// warnLogger is the log of a one-off command: warnings and errors, as JSON, to stderr.
func warnLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// quietFlag reads the arguments of a command whose only flag is --quiet.
func quietFlag(cmd string, args []string) (bool, error) {
	quiet := false
	for _, a := range args {
		if a != "--quiet" && a != "-quiet" {
			return false, usageError(fmt.Sprintf("%s: unknown argument %q", cmd, a))
		}
		quiet = true
	}
	return quiet, nil
}

func searchCmd(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "reindex" {
		return usageError("search: reindex [--quiet]")
	}
	quiet, err := quietFlag("search reindex", args[1:])
	if err != nil {
		return err
	}
	logger := warnLogger(stderr)
	app, err := Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer app.Close()
	if err := rebuild(ctx, app, projections.SearchProjector, true, quiet, stderr, stdout); err != nil {
		return err
	}
	return indexAll(ctx, app, quiet, stdout, stderr)
}
