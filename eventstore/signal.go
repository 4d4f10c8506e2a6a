package eventstore

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Signal wakes waiters in this process when something new may be readable: an append committed here,
// a NOTIFY arrived from another process, or a projector committed a batch (which may have held back
// the snapshot horizon). Waiters compare generations, so a wake-up that happens between their poll and
// their wait is never lost.
type Signal struct {
	mu     sync.Mutex
	gen    uint64
	ch     chan struct{}
	maxPos int64
	local  int64 // highest position appended by this process
}

// NewSignal returns a Signal with nothing signalled.
func NewSignal() *Signal { return &Signal{ch: make(chan struct{})} }

// Notify wakes every waiter; pos, when > 0, is the global position of an event known to be committed.
func (s *Signal) Notify(pos int64) {
	s.mu.Lock()
	s.gen++
	if pos > s.maxPos {
		s.maxPos = pos
	}
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// Appended records a commit of this process's own append at pos and wakes every waiter.
func (s *Signal) Appended(pos int64) {
	s.mu.Lock()
	if pos > s.local {
		s.local = pos
	}
	s.mu.Unlock()
	s.Notify(pos)
}

func (s *Signal) localAppends() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local
}

// Snapshot returns the current generation, a channel closed at the next Notify, and the highest
// committed global position seen.
func (s *Signal) Snapshot() (gen uint64, wake <-chan struct{}, maxPos int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.ch, s.maxPos
}

// NotifyChannel is the PostgreSQL channel on which appends are announced to other processes.
const NotifyChannel = "atlas_events"

// Announcer sends at most one NOTIFY per interval, outside any append transaction, when appends
// happened in this process, so subscribers in other processes wake without a tight poll. A NOTIFY in
// every append transaction would serialise all committing writers on the notify queue lock.
type Announcer struct {
	pool     *pgxpool.Pool
	signal   *Signal
	interval time.Duration
	log      *slog.Logger
}

// NewAnnouncer returns an Announcer that watches signal and notifies through pool.
func NewAnnouncer(pool *pgxpool.Pool, signal *Signal, interval time.Duration, log *slog.Logger) *Announcer {
	return &Announcer{pool: pool, signal: signal, interval: interval, log: log}
}

// Run announces until ctx ends.
func (a *Announcer) Run(ctx context.Context) {
	var sentPos int64
	for {
		_, wake, _ := a.signal.Snapshot()
		if maxPos := a.signal.localAppends(); maxPos > sentPos {
			if _, err := a.pool.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, strconv.FormatInt(maxPos, 10)); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.log.Warn("announce appends", "error", err)
			} else {
				sentPos = maxPos
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.interval):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}

// Listen relays NOTIFYs from other processes to signal until ctx ends, reconnecting after errors.
func Listen(ctx context.Context, pool *pgxpool.Pool, signal *Signal, log *slog.Logger) {
	for ctx.Err() == nil {
		err := listenOnce(ctx, pool, signal)
		if ctx.Err() != nil {
			return
		}
		log.Warn("listen for appends", "error", err)
		signal.Notify(0) // something may have been missed while disconnected
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func listenOnce(ctx context.Context, pool *pgxpool.Pool, signal *Signal) error {
	// A connection of its own, outside the pool, that closes when ctx ends (the pool's connections
	// may be set to send a cancel request instead, which does not interrupt a wait for notifications).
	cfg := pool.Config().ConnConfig.Copy()
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		pos, _ := strconv.ParseInt(n.Payload, 10, 64)
		signal.Notify(pos)
	}
}
