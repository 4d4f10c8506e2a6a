package eventstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/internal/pgtest"
)

// BenchPayload is about the size of a typical Atlas event payload.
type BenchPayload struct {
	SpaceID    uuid.UUID `json:"space_id"`
	Name       string    `json:"name"`
	Slug       string    `json:"slug"`
	Visibility string    `json:"visibility"`
	CreatedAt  time.Time `json:"created_at"`
}

func (BenchPayload) EventName() string { return "bench.created.v1" }

// BenchmarkAppend measures committed appends, each to a new stream (no conflicts), with 1 or 16
// concurrent writers and 1 or 10 events per append. scripts/bench.sh compares it with pgbench
// inserting the same rows into a plain copy of the events table.
func BenchmarkAppend(b *testing.B) {
	pool := pgtest.NewPool(b)
	reg := eventstore.NewRegistry()
	eventstore.Register[BenchPayload](reg)
	store := eventstore.New(pool, reg, eventstore.NewSubjectKeys(pool, time.Minute), eventstore.Options{})
	actor := uuid.New()
	appendOnce := func(events int) error {
		id := uuid.New()
		evs := make([]domain.Event, events)
		for i := range evs {
			evs[i] = BenchPayload{SpaceID: id, Name: "Research notes", Slug: "research-notes", Visibility: "private", CreatedAt: time.Now()}
		}
		tenant := actor
		_, err := store.Append(context.Background(), eventstore.AppendRequest{
			Streams:  []eventstore.StreamAppend{{StreamType: "bench", StreamID: id, TenantID: &tenant, Events: evs}},
			Metadata: eventstore.Metadata{ActorID: &actor, CorrelationID: "bench", CausationID: id.String(), CommandID: id.String(), RequestID: "bench"},
		})
		return err
	}
	for _, events := range []int{1, 10} {
		for _, writers := range []int{1, 16} {
			b.Run(fmt.Sprintf("events=%d/writers=%d", events, writers), func(b *testing.B) {
				var n atomic.Int64
				start := time.Now()
				b.ResetTimer()
				if writers == 1 {
					for i := 0; i < b.N; i++ {
						if err := appendOnce(events); err != nil {
							b.Fatal(err)
						}
						n.Add(1)
					}
				} else {
					b.SetParallelism((writers + 1) / 2) // GOMAXPROCS=2 on the reference machine
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := appendOnce(events); err != nil {
								b.Error(err)
								return
							}
							n.Add(1)
						}
					})
				}
				el := time.Since(start).Seconds()
				b.ReportMetric(float64(n.Load())/el, "tx/s")
				b.ReportMetric(float64(n.Load())*float64(events)/el, "events/s")
			})
		}
	}
}
