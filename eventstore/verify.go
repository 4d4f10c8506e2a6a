package eventstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Kinds of broken links that Verify reports.
const (
	// BrokenEdited: an event's stored columns no longer hash to its stored hash.
	BrokenEdited = "edited"
	// BrokenMissing: a stream skips versions (an event was deleted).
	BrokenMissing = "missing"
	// BrokenReordered: a stream's versions are not in the order of their global positions.
	BrokenReordered = "reordered"
	// BrokenLink: an event's content matches its hash, but its recorded predecessor hash is not the
	// hash of the stream's previous event (its predecessor was replaced, or it was rehashed onto a
	// different chain).
	BrokenLink = "chain_broken"
	// BrokenSealMissing: a seal number is absent from the chain of seals.
	BrokenSealMissing = "seal_missing"
	// BrokenSealChain: a seal does not start where its predecessor ended or does not chain to its hash.
	BrokenSealChain = "seal_chain_broken"
	// BrokenSealEdited: a seal's stored hash differs from the one recomputed from intact events, and
	// the next seal chains to the recomputed one: the seal row was altered.
	BrokenSealEdited = "seal_edited"
	// BrokenSealEventsMissing: fewer events in a sealed range than the seal counted.
	BrokenSealEventsMissing = "sealed_events_missing"
	// BrokenSealEventsAdded: more events in a sealed range than the seal counted.
	BrokenSealEventsAdded = "sealed_events_added"
	// BrokenSealMismatch: a sealed range holds as many events as sealed but hashes differently (events
	// reordered, edited or replaced, or the last seal itself altered).
	BrokenSealMismatch = "seal_mismatch"
	// BrokenAnchor: a seal the auditor recorded earlier (an anchor) has another hash now, or no longer
	// exists (seals were removed from the end of the chain).
	BrokenAnchor = "anchor_mismatch"
)

// Anchor is a seal's number and hash as an auditor recorded them earlier, outside the database: the
// chain of seals must still contain it. It catches a rewrite of the newest seals, which the chain alone
// cannot show.
type Anchor struct {
	Seq  int64
	Hash []byte
}

// ParseAnchor parses "SEQ:HEXHASH" (as the report's last_seal prints them).
func ParseAnchor(s string) (Anchor, error) {
	seq, h, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 {
		return Anchor{}, fmt.Errorf("anchor %q is not SEQ:HASH (a seal number and its hex SHA-256)", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return Anchor{}, fmt.Errorf("anchor %q is not SEQ:HASH (a seal number and its hex SHA-256)", s)
	}
	return Anchor{Seq: n, Hash: b}, nil
}

// SealInfo identifies the last seal of a report: record "seq:hash" somewhere else and pass it as an
// anchor to a later verification.
type SealInfo struct {
	Seq        int64     `json:"seq"`
	Hash       string    `json:"hash"`
	ToPosition int64     `json:"to_position"`
	SealedAt   time.Time `json:"sealed_at"`
	Anchor     string    `json:"anchor"`
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	Progress VerifyProgress
	Anchors  []Anchor
}

// Broken describes one broken link found by Verify. Position orders findings: the event's
// global position for stream findings, the seal's last position for seal findings.
type Broken struct {
	Kind          string     `json:"kind"`
	Reason        string     `json:"reason"`
	Position      int64      `json:"position"`
	StreamID      *uuid.UUID `json:"stream_id,omitempty"`
	StreamType    string     `json:"stream_type,omitempty"`
	StreamVersion int64      `json:"stream_version,omitempty"`
	EventID       *uuid.UUID `json:"event_id,omitempty"`
	Seal          int64      `json:"seal,omitempty"`
	FromPosition  int64      `json:"from_position,omitempty"`
	ToPosition    int64      `json:"to_position,omitempty"`
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	OK             bool  `json:"ok"`
	CheckedEvents  int64 `json:"checked_events"`
	CheckedStreams int64 `json:"checked_streams"`
	CheckedSeals   int64 `json:"checked_seals"`
	SealedThrough  int64 `json:"sealed_through"`  // the last sealed global position (0: no seal yet)
	UnsealedEvents int64 `json:"unsealed_events"` // events past it, verified by their stream chains only
	// OldestUnsealedAt is when the oldest unsealed event was recorded. Much older than the sealing
	// interval means the sealer has not run, or seals were removed from the end of the chain.
	OldestUnsealedAt *time.Time `json:"oldest_unsealed_at"`
	LastSeal         *SealInfo  `json:"last_seal"`
	BrokenCount      int64      `json:"broken_count"`
	FirstBroken      *Broken    `json:"first_broken"`
	// Broken lists the earliest findings (at most MaxBrokenListed), in log order.
	Broken []Broken `json:"broken"`
}

// MaxBrokenListed bounds the findings a report lists; BrokenCount counts them all.
const MaxBrokenListed = 20

func (r *VerifyReport) add(b Broken) {
	r.BrokenCount++
	r.Broken = append(r.Broken, b)
	sort.SliceStable(r.Broken, func(i, j int) bool { return r.Broken[i].Position < r.Broken[j].Position })
	if len(r.Broken) > MaxBrokenListed {
		r.Broken = r.Broken[:MaxBrokenListed]
	}
}

// VerifyProgress is called now and then during Verify with the phase ("streams", "seals") and the
// events checked so far in that phase.
type VerifyProgress func(phase string, events int64)

// Verify checks the whole log in one consistent snapshot and constant memory: every stream's hash
// chain (each event's hash over its columns and its predecessor's hash, versions without gaps, in
// the order of their global positions) and the chain of seals (each seal's hash over the events of
// its range, chained to the previous seal). Events appended after the last seal are covered by their
// stream chains alone. Deleting a stream's last unsealed events cannot be told from their never
// having been written; once sealed, it can.
func Verify(ctx context.Context, pool *pgxpool.Pool, progress VerifyProgress) (VerifyReport, error) {
	return VerifyWith(ctx, pool, VerifyOptions{Progress: progress})
}

// VerifyWith is Verify with options: progress reports, and anchors (seals recorded earlier that must
// still be in the chain with the same hash).
func VerifyWith(ctx context.Context, pool *pgxpool.Pool, opts VerifyOptions) (VerifyReport, error) {
	progress := opts.Progress
	if progress == nil {
		progress = func(string, int64) {}
	}
	rep := VerifyReport{Broken: []Broken{}}
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := verifyStreams(ctx, tx, &rep, progress); err != nil {
			return err
		}
		return verifySeals(ctx, tx, &rep, progress, opts.Anchors)
	})
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.OK = rep.BrokenCount == 0
	if len(rep.Broken) > 0 {
		rep.FirstBroken = &rep.Broken[0]
	}
	return rep, nil
}

func verifyStreams(ctx context.Context, tx pgx.Tx, rep *VerifyReport, progress VerifyProgress) error {
	rows, err := tx.Query(ctx, `SELECT global_position, event_id, stream_type, stream_id, stream_version, event_type,
		schema_version, tenant_id, recorded_at, data::text, metadata::text, prev_hash, hash
		FROM events ORDER BY stream_id, stream_version`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		cur      uuid.UUID
		started  bool
		prevHash []byte
		prevPos  int64
		want     int64
	)
	for rows.Next() {
		var f ChainFields
		var pos int64
		var storedPrev, hash []byte
		if err := rows.Scan(&pos, &f.EventID, &f.StreamType, &f.StreamID, &f.StreamVersion, &f.EventType, &f.SchemaVersion,
			&f.TenantID, &f.RecordedAt, &f.Data, &f.Metadata, &storedPrev, &hash); err != nil {
			return err
		}
		rep.CheckedEvents++
		if rep.CheckedEvents%10000 == 0 {
			progress("streams", rep.CheckedEvents)
		}
		if !started || f.StreamID != cur {
			cur, started = f.StreamID, true
			rep.CheckedStreams++
			prevHash, prevPos, want = GenesisHash, 0, 1
		}
		sid, eid := f.StreamID, f.EventID
		at := Broken{Position: pos, StreamID: &sid, StreamType: f.StreamType, StreamVersion: f.StreamVersion, EventID: &eid}
		selfOK := bytes.Equal(hash, ChainHash(storedPrev, f))
		switch {
		case f.StreamVersion != want:
			at.Kind = BrokenMissing
			if want == f.StreamVersion-1 {
				at.Reason = fmt.Sprintf("stream %s has no version %d: the event before version %d was deleted", sid, want, f.StreamVersion)
			} else {
				at.Reason = fmt.Sprintf("stream %s has no versions %d to %d: the events before version %d were deleted", sid, want, f.StreamVersion-1, f.StreamVersion)
			}
			rep.add(at)
		case pos < prevPos:
			at.Kind = BrokenReordered
			at.Reason = fmt.Sprintf("version %d of stream %s sits at global position %d, before version %d at %d: the stream's events were reordered",
				f.StreamVersion, sid, pos, f.StreamVersion-1, prevPos)
			rep.add(at)
		case !selfOK:
			at.Kind = BrokenEdited
			at.Reason = fmt.Sprintf("version %d of stream %s (event %s) no longer matches its hash: its content was edited", f.StreamVersion, sid, eid)
			rep.add(at)
		case !bytes.Equal(storedPrev, prevHash):
			at.Kind = BrokenLink
			at.Reason = fmt.Sprintf("version %d of stream %s does not chain to version %d: the predecessor hash it recorded differs (an earlier event was replaced or the chain rewritten)",
				f.StreamVersion, sid, f.StreamVersion-1)
			rep.add(at)
		}
		// Continue from what is stored, so one break is reported once and later breaks still show.
		prevHash, prevPos, want = hash, pos, f.StreamVersion+1
	}
	if err := rows.Err(); err != nil {
		return err
	}
	progress("streams", rep.CheckedEvents)
	return nil
}

func verifySeals(ctx context.Context, tx pgx.Tx, rep *VerifyReport, progress VerifyProgress, anchors []Anchor) error {
	var (
		prev     *Seal
		pending  *Seal // a seal whose stored hash differs from the recomputed one, judged by its successor
		computed []byte
		sealed   int64
	)
	judge := func(s *Seal, recomputed []byte, next *Seal) {
		b := Broken{Position: s.ToPosition, Seal: s.Seq, FromPosition: s.FromPosition, ToPosition: s.ToPosition}
		if next != nil && bytes.Equal(next.PrevHash, recomputed) {
			b.Kind = BrokenSealEdited
			b.Reason = fmt.Sprintf("seal %d's stored hash was altered: the events of positions %d to %d and seal %d agree with each other, not with it",
				s.Seq, s.FromPosition+1, s.ToPosition, next.Seq)
		} else {
			b.Kind = BrokenSealMismatch
			b.Reason = fmt.Sprintf("the events of positions %d to %d no longer hash to seal %d: they were reordered, edited or replaced (or the seal was altered)",
				s.FromPosition+1, s.ToPosition, s.Seq)
		}
		rep.add(b)
	}
	var after int64
	for {
		page, err := Seals(ctx, tx, after, 100)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			s := page[i]
			after = s.Seq
			rep.CheckedSeals++
			if pending != nil {
				judge(pending, computed, &s)
				pending = nil
			}
			wantSeq, wantFrom, wantPrev := int64(1), int64(0), GenesisHash
			if prev != nil {
				wantSeq, wantFrom, wantPrev = prev.Seq+1, prev.ToPosition, prev.Hash
			}
			base := Broken{Position: s.ToPosition, Seal: s.Seq, FromPosition: s.FromPosition, ToPosition: s.ToPosition}
			switch {
			case s.Seq != wantSeq:
				b := base
				b.Kind = BrokenSealMissing
				b.Reason = fmt.Sprintf("seals %d to %d are missing before seal %d", wantSeq, s.Seq-1, s.Seq)
				rep.add(b)
			case s.FromPosition != wantFrom || !bytes.Equal(s.PrevHash, wantPrev):
				b := base
				b.Kind = BrokenSealChain
				b.Reason = fmt.Sprintf("seal %d does not continue seal %d (it starts after position %d and chains to another hash; expected position %d and seal %d's hash)",
					s.Seq, wantSeq-1, s.FromPosition, wantFrom, wantSeq-1)
				rep.add(b)
			}
			// Recompute over the events in the seal's range, chained to the seal's own prev_hash, so
			// that a broken seal link is reported once and the ranges are still checked.
			rows, err := tx.Query(ctx, `SELECT global_position, hash FROM events
				WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position`, s.FromPosition, s.ToPosition)
			if err != nil {
				return err
			}
			h := newSealHasher(s.PrevHash)
			var pos int64
			var eh []byte
			if _, err := pgx.ForEachRow(rows, []any{&pos, &eh}, func() error { h.add(pos, eh); return nil }); err != nil {
				return err
			}
			sealed += h.count
			progress("seals", sealed)
			computed = h.sum()
			switch {
			case h.count < s.EventCount:
				b := base
				b.Kind = BrokenSealEventsMissing
				b.Reason = fmt.Sprintf("seal %d counted %d events in positions %d to %d; %d are there: events were deleted",
					s.Seq, s.EventCount, s.FromPosition+1, s.ToPosition, h.count)
				rep.add(b)
			case h.count > s.EventCount:
				b := base
				b.Kind = BrokenSealEventsAdded
				b.Reason = fmt.Sprintf("seal %d counted %d events in positions %d to %d; %d are there: events were inserted",
					s.Seq, s.EventCount, s.FromPosition+1, s.ToPosition, h.count)
				rep.add(b)
			case !bytes.Equal(computed, s.Hash):
				p := s
				pending = &p
			}
			for _, a := range anchors {
				if a.Seq == s.Seq && !bytes.Equal(a.Hash, s.Hash) {
					b := base
					b.Kind = BrokenAnchor
					b.Reason = fmt.Sprintf("seal %d's hash is not the one recorded as an anchor (%x): the seal chain was rewritten", s.Seq, a.Hash)
					rep.add(b)
				}
			}
			prev = &page[i]
			rep.SealedThrough = s.ToPosition
		}
	}
	if pending != nil {
		judge(pending, computed, nil)
	}
	if prev != nil {
		h := hex.EncodeToString(prev.Hash)
		rep.LastSeal = &SealInfo{Seq: prev.Seq, Hash: h, ToPosition: prev.ToPosition, SealedAt: prev.SealedAt,
			Anchor: strconv.FormatInt(prev.Seq, 10) + ":" + h}
	}
	var lastSeq int64
	if prev != nil {
		lastSeq = prev.Seq
	}
	for _, a := range anchors {
		if a.Seq > lastSeq {
			rep.add(Broken{Kind: BrokenAnchor, Position: rep.SealedThrough, Seal: a.Seq,
				Reason: fmt.Sprintf("seal %d, recorded as an anchor, is gone: the chain ends at seal %d (seals were removed from its end)", a.Seq, lastSeq)})
		}
	}
	if err := tx.QueryRow(ctx, `SELECT count(*), min(recorded_at) FROM events WHERE global_position > $1`, rep.SealedThrough).
		Scan(&rep.UnsealedEvents, &rep.OldestUnsealedAt); err != nil {
		return err
	}
	if rep.OldestUnsealedAt != nil {
		t := rep.OldestUnsealedAt.UTC()
		rep.OldestUnsealedAt = &t
	}
	return nil
}
