package eventstore

import (
	stdsql "database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
)

// Topic is the name under which subscribers read the events table.
const Topic = "events"

// OffsetsTable stores each consumer group's checkpoint: (offset_acked, last_processed_transaction_id).
const OffsetsTable = "projection_offsets"

// Message metadata keys set by SchemaAdapter.
const (
	metaTransactionID = "transaction_id"
	metaStreamType    = "stream_type"
	metaStreamID      = "stream_id"
	metaStreamVersion = "stream_version"
	metaEventType     = "event_type"
	metaSchemaVersion = "schema_version"
	metaEventMetadata = "metadata"
	metaTenantID      = "tenant_id"
	metaRecordedAt    = "recorded_at"
	metaPosition      = "global_position"
)

// SchemaAdapter makes the events table itself the topic watermill-sql's subscriber reads, in
// (transaction_id, global_position) order below the snapshot's xmin, so no event is copied to a second
// table and no late-committing transaction is skipped. Publishing through watermill is refused:
// appends go through Store.Append.
type SchemaAdapter struct {
	BatchSize int
}

// InsertQuery implements wsql.SchemaAdapter; it always fails.
func (SchemaAdapter) InsertQuery(wsql.InsertQueryParams) (wsql.Query, error) {
	return wsql.Query{}, errors.New("events are appended through the event store, not published")
}

// SchemaInitializingQueries implements wsql.SchemaAdapter: the schema comes from migrations.
func (SchemaAdapter) SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

// SubscribeIsolationLevel implements wsql.SchemaAdapter.
func (SchemaAdapter) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelRepeatableRead
}

// SelectQuery implements wsql.SchemaAdapter.
func (a SchemaAdapter) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	next, err := p.OffsetsAdapter.NextOffsetQuery(wsql.NextOffsetQueryParams{Topic: p.Topic, ConsumerGroup: p.ConsumerGroup})
	if err != nil {
		return wsql.Query{}, err
	}
	batch := a.BatchSize
	if batch <= 0 {
		batch = 100
	}
	q := `SELECT * FROM (
		WITH last_processed AS (` + next.Query + `)
		SELECT global_position, transaction_id, event_id, data, metadata, stream_type, stream_id,
		       stream_version, event_type, schema_version, tenant_id, recorded_at
		FROM events
		WHERE ((transaction_id = (SELECT last_processed_transaction_id FROM last_processed)
		        AND global_position > (SELECT offset_acked FROM last_processed))
		       OR transaction_id > (SELECT last_processed_transaction_id FROM last_processed))
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
	) AS e ORDER BY transaction_id, global_position LIMIT ` + strconv.Itoa(batch)
	return wsql.Query{Query: q, Args: next.Args}, nil
}

// UnmarshalMessage implements wsql.SchemaAdapter: the row's columns go into the message metadata.
func (SchemaAdapter) UnmarshalMessage(p wsql.UnmarshalMessageParams) (wsql.Row, error) {
	var (
		r                     wsql.Row
		xid                   wsql.XID8
		eventID, streamID     uuid.UUID
		tenantID              *uuid.UUID
		streamType, eventType string
		streamVersion         int64
		schemaVersion         int
		recordedAt            time.Time
	)
	if err := p.Row.Scan(&r.Offset, &xid, &eventID, &r.Payload, &r.Metadata, &streamType, &streamID,
		&streamVersion, &eventType, &schemaVersion, &tenantID, &recordedAt); err != nil {
		return wsql.Row{}, fmt.Errorf("scan event row: %w", err)
	}
	msg := message.NewMessage(eventID.String(), r.Payload)
	msg.Metadata = message.Metadata{
		metaPosition:      strconv.FormatInt(r.Offset, 10),
		metaTransactionID: strconv.FormatUint(uint64(xid), 10),
		metaStreamType:    streamType,
		metaStreamID:      streamID.String(),
		metaStreamVersion: strconv.FormatInt(streamVersion, 10),
		metaEventType:     eventType,
		metaSchemaVersion: strconv.Itoa(schemaVersion),
		metaEventMetadata: string(r.Metadata),
		metaRecordedAt:    recordedAt.UTC().Format(time.RFC3339Nano),
	}
	if tenantID != nil {
		msg.Metadata[metaTenantID] = tenantID.String()
	}
	r.UUID = []byte(eventID.String())
	r.Msg = msg
	r.ExtraData = map[string]any{"transaction_id": xid}
	return r, nil
}

// OffsetsAdapter is watermill-sql's PostgreSQL offsets adapter over the projection_offsets table.
func OffsetsAdapter() wsql.OffsetsAdapter {
	return wsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: func(string) string { return OffsetsTable }}
}

// DecodeMessage turns a message delivered by a subscriber over SchemaAdapter into a Record.
func (s *Store) DecodeMessage(msg *message.Message) (Record, error) {
	var r Record
	md := msg.Metadata
	var err error
	parse := func(key string, dst *int64) {
		if err == nil {
			*dst, err = strconv.ParseInt(md[key], 10, 64)
		}
	}
	parse(metaPosition, &r.Position.GlobalPosition)
	parse(metaStreamVersion, &r.StreamVersion)
	var schemaVersion int64
	parse(metaSchemaVersion, &schemaVersion)
	if err == nil {
		r.Position.TransactionID, err = strconv.ParseUint(md[metaTransactionID], 10, 64)
	}
	if err == nil {
		r.StreamID, err = uuid.Parse(md[metaStreamID])
	}
	if err == nil {
		r.EventID, err = uuid.Parse(msg.UUID)
	}
	if err == nil && md[metaTenantID] != "" {
		var t uuid.UUID
		t, err = uuid.Parse(md[metaTenantID])
		r.TenantID = &t
	}
	if err == nil {
		r.RecordedAt, err = time.Parse(time.RFC3339Nano, md[metaRecordedAt])
	}
	if err != nil {
		return r, fmt.Errorf("message %s: %w", msg.UUID, err)
	}
	r.StreamType = md[metaStreamType]
	return r, s.DecodeRecord(&r, md[metaEventType], int(schemaVersion), msg.Payload, []byte(md[metaEventMetadata]))
}

var noDeadline time.Duration

// NewSubscriber returns a watermill-sql subscriber of consumer group group over the events table.
// Polling between batches is governed by backoff (see Waiter).
func NewSubscriber(db wsql.Beginner, group string, batch int, backoff wsql.BackoffManager, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	return wsql.NewSubscriber(db, wsql.SubscriberConfig{
		ConsumerGroup:    group,
		SchemaAdapter:    SchemaAdapter{BatchSize: batch},
		OffsetsAdapter:   OffsetsAdapter(),
		BackoffManager:   backoff,
		InitializeSchema: false,
		ResendInterval:   time.Millisecond,
		// No ack deadline: past it watermill would commit while the handler still uses the
		// transaction. The projection runtime bounds handlers itself and rolls their savepoint back.
		AckDeadline: &noDeadline,
	}, logger)
}

// Waiter is the subscriber's BackoffManager. After an empty poll it waits for the Signal (an append
// here, a NOTIFY from elsewhere, another projector's commit) or, as a fallback, for Fallback. When the
// Signal knows of committed events past what this consumer has seen (a transaction still open below
// them holds the snapshot horizon back), it polls again after a short, growing delay instead of
// sleeping until the next signal.
type Waiter struct {
	Signal   *Signal
	Fallback time.Duration   // longest wait without a signal
	Retry    time.Duration   // wait after a query error
	Seen     func() int64    // highest global position this consumer has handled
	Stop     <-chan struct{} // closed when the consumer is stopping
	OnError  func(err error) // called for query errors; may be nil

	lastGen      uint64
	behind       time.Duration
	commitFailed atomic.Bool
}

// CommitFailed records that the last batch's COMMIT failed, so that the next poll waits Retry instead
// of starting again at once.
func (w *Waiter) CommitFailed(error) { w.commitFailed.Store(true) }

// HandleError implements wsql.BackoffManager.
func (w *Waiter) HandleError(_ watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	gen, wake, maxPos := w.Signal.Snapshot()
	if err != nil {
		if w.OnError != nil {
			w.OnError(err)
		}
		return w.Retry
	}
	if w.commitFailed.Swap(false) {
		return w.Retry
	}
	if !noMsg {
		// This consumer just committed a batch; others may have been held behind its transaction.
		w.Signal.Notify(0)
		w.lastGen = gen + 1
		w.behind = 0
		return 0
	}
	if gen != w.lastGen {
		w.lastGen = gen
		return 0
	}
	if maxPos > w.Seen() {
		switch {
		case w.behind == 0:
			w.behind = time.Millisecond
		case w.behind < 64*time.Millisecond:
			w.behind *= 2
		}
		return w.behind
	}
	w.behind = 0
	select {
	case <-wake:
	case <-time.After(w.Fallback):
	case <-w.Stop:
		return 10 * time.Millisecond
	}
	w.lastGen, _, _ = w.Signal.Snapshot()
	return 0
}
