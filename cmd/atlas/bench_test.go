package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/commands"
)

// BenchmarkCommitToReadModelLag issues space-creation commands at a steady rate (200/s for 15 s) and
// measures, for each, the time from the append's commit (the command returning) until the spaces
// read model has applied it (WaitFor on its consistency token returning): the lag a client that
// reads its own writes experiences. Run it with -benchtime 1x; it reports p50, p99 and max.
func BenchmarkCommitToReadModelLag(b *testing.B) {
	const rate, seconds = 200, 15
	app, _ := openApp(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Runtime.Run(ctx) }()
	defer func() { cancel(); <-done }()

	reg, err := app.Commands.Register(ctx, commands.Context{}, fmt.Sprintf("lag-%d@example.com", time.Now().UnixNano()), "Lag", "correct horse battery")
	if err != nil {
		b.Fatal(err)
	}
	cc := commands.Context{Actor: reg.User.ID}
	for i := 0; i < b.N; i++ {
		var mu sync.Mutex
		var lags []time.Duration
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rate)
		stop := time.After(seconds * time.Second)
		n := 0
	loop:
		for {
			select {
			case <-stop:
				break loop
			case <-tick.C:
			}
			n++
			slug := fmt.Sprintf("s-%d-%d", i, n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := app.Commands.CreateSpace(ctx, cc, nil, "Lag", slug, "private")
				if err != nil {
					b.Error(err)
					return
				}
				committed := time.Now()
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				defer wcancel()
				if err := app.Runtime.WaitFor(wctx, res.Position, "spaces"); err != nil {
					b.Error(err)
					return
				}
				lag := time.Since(committed)
				mu.Lock()
				lags = append(lags, lag)
				mu.Unlock()
			}()
		}
		tick.Stop()
		wg.Wait()
		if len(lags) == 0 {
			b.Fatal("no command completed")
		}
		sort.Slice(lags, func(a, c int) bool { return lags[a] < lags[c] })
		pct := func(p float64) float64 {
			return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000
		}
		b.ReportMetric(float64(len(lags))/seconds, "cmd/s")
		b.ReportMetric(pct(0.50), "p50_ms")
		b.ReportMetric(pct(0.99), "p99_ms")
		b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "max_ms")
	}
}
