package eventstore_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/eventstore"
)

// TestVerifyPerf measures sealing and verification of 200,000 events (40,000 streams of 5); it runs only
// with ATLAS_VERIFY_PERF=1 (docs/performance.md, "Audit").
func TestVerifyPerf(t *testing.T) {
	if os.Getenv("ATLAS_VERIFY_PERF") == "" {
		t.Skip()
	}
	f := newFixture(t)
	ctx := context.Background()
	const total, perAppend = 200000, 5000
	for i := 0; i < total; i += perAppend {
		req := eventstore.AppendRequest{}
		for j := 0; j < perAppend/5; j++ {
			evs := []domain.Event{Counted{1}, Counted{2}, Counted{3}, Counted{4}, Counted{5}}
			req.Streams = append(req.Streams, eventstore.StreamAppend{StreamType: "test", StreamID: uuid.New(), Events: evs})
		}
		if _, err := f.store.Append(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	n, err := (&eventstore.Sealer{Pool: f.pool}).SealOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seal := time.Since(start)
	start = time.Now()
	rep, err := eventstore.Verify(ctx, f.pool, nil)
	if err != nil || !rep.OK {
		t.Fatal(err, rep)
	}
	v := time.Since(start)
	t.Logf("%d events: %d seals in %s (%.0f events/s); verify in %s (%.0f events/s)", total, n, seal, total/seal.Seconds(), v, total/v.Seconds())
}
