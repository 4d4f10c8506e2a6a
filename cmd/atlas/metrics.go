package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/projections"
)

type storeMetrics struct {
	events   prometheus.Counter
	appends  *prometheus.CounterVec
	duration prometheus.Histogram
}

func newStoreMetrics(r prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "atlas_events_appended_total", Help: "Events committed to the event log by this process."}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atlas_appends_total", Help: "Append statements by outcome (ok or the error code, e.g. version_conflict)."},
			[]string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "atlas_append_duration_seconds", Help: "Latency of one append statement (one round trip).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
	}
	r.MustRegister(m.events, m.appends, m.duration)
	return m
}

func (m *storeMetrics) appended(n int, d time.Duration, err error) {
	m.duration.Observe(d.Seconds())
	if err != nil {
		m.appends.WithLabelValues(string(domain.ErrorCode(err))).Inc()
		return
	}
	m.appends.WithLabelValues("ok").Inc()
	m.events.Add(float64(n))
}

// projectorCollector reports each projector's lag and status when scraped.
type projectorCollector struct {
	rt                          *projections.Runtime
	lagEvents, lagSeconds, live *prometheus.Desc
	position                    *prometheus.Desc
	version                     *prometheus.Desc
	rebuildDone, rebuildTotal   *prometheus.Desc
	rebuildRate                 *prometheus.Desc
}

func newProjectorCollector(rt *projections.Runtime) *projectorCollector {
	l := []string{"projector"}
	return &projectorCollector{
		rt:         rt,
		lagEvents:  prometheus.NewDesc("atlas_projector_lag_events", "Events readable in the log that the projector has not applied yet.", l, nil),
		lagSeconds: prometheus.NewDesc("atlas_projector_lag_seconds", "Age of the oldest event the projector has not applied yet (0 when caught up).", l, nil),
		live:       prometheus.NewDesc("atlas_projector_status", "1 for the projector's current status (live, rebuilding, failed).", []string{"projector", "status"}, nil),
		position:   prometheus.NewDesc("atlas_projector_position", "Global position of the projector's checkpoint.", l, nil),
		version:    prometheus.NewDesc("atlas_projector_version", "Version of the projector's live tables.", l, nil),
		rebuildDone: prometheus.NewDesc("atlas_projector_rebuild_events_done",
			"During a rebuild: events replayed into the new tables so far (by global position).", l, nil),
		rebuildTotal: prometheus.NewDesc("atlas_projector_rebuild_events_total",
			"During a rebuild: events to replay before the swap (the log's head when it started, by global position).", l, nil),
		rebuildRate: prometheus.NewDesc("atlas_projector_rebuild_events_per_second", "During a rebuild: its average rate so far.", l, nil),
	}
}

func (c *projectorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagEvents
	ch <- c.lagSeconds
	ch <- c.live
	ch <- c.position
	ch <- c.version
	ch <- c.rebuildDone
	ch <- c.rebuildTotal
	ch <- c.rebuildRate
}

func (c *projectorCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sts, err := c.rt.Statuses(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.lagEvents, err)
		return
	}
	for _, s := range sts {
		ch <- prometheus.MustNewConstMetric(c.lagEvents, prometheus.GaugeValue, float64(s.LagEvents), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, s.LagSeconds, s.Name)
		ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(s.Position.GlobalPosition), s.Name)
		ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(s.Version), s.Name)
		if r := s.Rebuild; r != nil {
			ch <- prometheus.MustNewConstMetric(c.rebuildDone, prometheus.GaugeValue, float64(r.EventsDone), s.Name)
			ch <- prometheus.MustNewConstMetric(c.rebuildTotal, prometheus.GaugeValue, float64(r.EventsTotal), s.Name)
			ch <- prometheus.MustNewConstMetric(c.rebuildRate, prometheus.GaugeValue, r.Rate, s.Name)
		}
		for _, st := range []string{"live", "rebuilding", "failed"} {
			v := 0.0
			if s.Status == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, v, s.Name, st)
		}
	}
}

// sealCollector reports how far the seals of the global order have come, when scraped.
type sealCollector struct {
	pool                   *pgxpool.Pool
	sealed, head, lastSeal *prometheus.Desc
}

func newSealCollector(pool *pgxpool.Pool) *sealCollector {
	return &sealCollector{
		pool:     pool,
		sealed:   prometheus.NewDesc("atlas_audit_sealed_position", "Last global position covered by a seal (audit_seals).", nil, nil),
		head:     prometheus.NewDesc("atlas_audit_head_position", "Highest global position handed out to an event (committed or not).", nil, nil),
		lastSeal: prometheus.NewDesc("atlas_audit_last_seal_timestamp_seconds", "When the last seal was written (Unix time; 0 before the first).", nil, nil),
	}
}

func (c *sealCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sealed
	ch <- c.head
	ch <- c.lastSeal
}

func (c *sealCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var sealed, head int64
	var at float64
	err := c.pool.QueryRow(ctx, `SELECT coalesce((SELECT to_position FROM audit_seals ORDER BY seq DESC LIMIT 1), 0),
		coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'global_position')::regclass), 0),
		coalesce((SELECT extract(epoch FROM sealed_at)::float8 FROM audit_seals ORDER BY seq DESC LIMIT 1), 0)`).Scan(&sealed, &head, &at)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.sealed, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.sealed, prometheus.GaugeValue, float64(sealed))
	ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, float64(head))
	ch <- prometheus.MustNewConstMetric(c.lastSeal, prometheus.GaugeValue, at)
}
