package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/atlas-workspace/atlas/commands"
)

// rawArgs is the baseline's job: River alone, no Atlas events.
type rawArgs struct {
	N int `json:"n"`
}

func (rawArgs) Kind() string { return "bench_raw_noop" }

type rawWorker struct {
	river.WorkerDefaults[rawArgs]
}

func (rawWorker) Work(context.Context, *river.Job[rawArgs]) error { return nil }

// BenchmarkTaskThroughput measures no-op tasks per second from creation to completion through Atlas
// (CreateTask: the job and the created and queued events in one transaction; the worker's started and
// completed events appended at the expected version; heartbeats), next to the baseline measured in
// the same run on the same database: River alone inserting and working a no-op job of the same
// concurrency. Both create `tasks` jobs from 16 goroutines and run them with ATLAS_BENCH_TASK_WORKERS
// workers (default 8). Run it with -benchtime 1x.
func BenchmarkTaskThroughput(b *testing.B) {
	const tasks, creators = 2000, 16
	workers := 8
	if v := getenvInt("ATLAS_BENCH_TASK_WORKERS"); v > 0 {
		workers = v
	}
	app, _ := openApp(b, map[string]string{"ATLAS_TASK_WORKERS": strconv.Itoa(workers), "ATLAS_TASK_POLL": "50ms"})
	ctx := context.Background()
	reg, err := app.Commands.Register(ctx, commands.Context{}, fmt.Sprintf("bench-%d@example.com", time.Now().UnixNano()), "Bench", "correct horse battery")
	if err != nil {
		b.Fatal(err)
	}
	space := reg.User.PersonalSpaceID
	cc := commands.Context{Actor: reg.User.ID}

	for i := 0; i < b.N; i++ {
		// Baseline: River alone.
		rawTPS := rawRiver(b, app.Pool, tasks, creators, workers)

		// Atlas.
		if err := app.Tasks.Start(ctx); err != nil {
			b.Fatal(err)
		}
		var before int
		_ = app.Pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE event_type = 'task.completed'`).Scan(&before)
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := 0; c < creators; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= tasks {
					if _, err := app.Commands.CreateTask(ctx, cc, space, "noop", json.RawMessage(`{}`)); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		created := time.Since(start)
		waitCount(b, app.Pool, `SELECT count(*) - $1 FROM events WHERE event_type = 'task.completed'`, before, tasks)
		elapsed := time.Since(start)
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = app.Tasks.Stop(sctx)
		cancel()
		atlasTPS := float64(tasks) / elapsed.Seconds()
		b.ReportMetric(float64(workers), "workers")
		b.ReportMetric(rawTPS, "raw_river_jobs/s")
		b.ReportMetric(atlasTPS, "atlas_tasks/s")
		b.ReportMetric(100*atlasTPS/rawTPS, "atlas_%_of_raw")
		b.ReportMetric(float64(tasks)/created.Seconds(), "atlas_creates/s")
	}
}

// rawRiver inserts n no-op jobs from creators goroutines into a River client of its own with the
// given number of workers, and returns jobs per second from the first insert to the last completion.
func rawRiver(b *testing.B, pool *pgxpool.Pool, n, creators, workers int) float64 {
	ctx := context.Background()
	ws := river.NewWorkers()
	river.AddWorker[rawArgs](ws, rawWorker{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{"bench_raw": {MaxWorkers: workers}},
		Workers:           ws,
		FetchPollInterval: 50 * time.Millisecond,
		FetchCooldown:     5 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = client.Stop(sctx)
		cancel()
	}()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < creators; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				// One transaction per job, as Atlas's CreateTask has.
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					_, err := client.InsertTx(ctx, tx, rawArgs{N: int(i)}, &river.InsertOpts{Queue: "bench_raw"})
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitCount(b, pool, `SELECT count(*) - $1 FROM river_job WHERE kind = 'bench_raw_noop' AND state = 'completed'`, 0, n)
	return float64(n) / time.Since(start).Seconds()
}

// waitCount polls query (with arg) every 5 ms until it reaches n (10 minutes at most).
func waitCount(b *testing.B, pool *pgxpool.Pool, query string, arg, n int) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var got int
		if err := pool.QueryRow(context.Background(), query, arg).Scan(&got); err != nil {
			b.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d done after 10 minutes", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func getenvInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}
