package eventstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// ChainFields are the stored columns an event's hash covers, in their canonical text forms (data and
// metadata as PostgreSQL's jsonb text, which is canonical).
type ChainFields struct {
	EventID       uuid.UUID
	StreamType    string
	StreamID      uuid.UUID
	StreamVersion int64
	EventType     string
	SchemaVersion int
	TenantID      *uuid.UUID
	RecordedAt    time.Time
	Data          string
	Metadata      string
}

// ChainHash returns sha256(prev || canonical envelope): the same value the events_chain trigger
// stores in the hash column, recomputed outside the database.
func ChainHash(prev []byte, f ChainFields) []byte {
	var b bytes.Buffer
	tenant := ""
	if f.TenantID != nil {
		tenant = f.TenantID.String()
	}
	for i, s := range []string{f.EventID.String(), f.StreamType, f.StreamID.String(),
		strconv.FormatInt(f.StreamVersion, 10), f.EventType, strconv.Itoa(f.SchemaVersion), tenant,
		strconv.FormatInt(f.RecordedAt.UnixMicro(), 10), f.Data, f.Metadata} {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(s)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(b.Bytes())
	return h.Sum(nil)
}

// GenesisHash is the prev_hash of every stream's first event.
var GenesisHash = make([]byte, sha256.Size)

// VerifyStream recomputes a stream's hash chain from its stored columns. It returns the first
// stream_version whose link is broken (an edited, missing or reordered event), or 0 when the chain holds.
func VerifyStream(ctx context.Context, q Querier, streamID uuid.UUID) (int64, error) {
	rows, err := q.Query(ctx, `SELECT event_id, stream_type, stream_id, stream_version, event_type, schema_version,
		tenant_id, recorded_at, data::text, metadata::text, prev_hash, hash
		FROM events WHERE stream_id = $1 ORDER BY stream_version`, streamID)
	if err != nil {
		return 0, fmt.Errorf("verify %s: %w", streamID, err)
	}
	defer rows.Close()
	prev := GenesisHash
	var want int64 = 1
	for rows.Next() {
		var f ChainFields
		var prevHash, hash []byte
		if err := rows.Scan(&f.EventID, &f.StreamType, &f.StreamID, &f.StreamVersion, &f.EventType, &f.SchemaVersion,
			&f.TenantID, &f.RecordedAt, &f.Data, &f.Metadata, &prevHash, &hash); err != nil {
			return 0, err
		}
		if f.StreamVersion != want || !bytes.Equal(prevHash, prev) || !bytes.Equal(hash, ChainHash(prev, f)) {
			return want, nil
		}
		prev = hash
		want++
	}
	return 0, rows.Err()
}
