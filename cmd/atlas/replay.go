package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/apikey"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/domain/platform"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/task"
	"github.com/atlas-workspace/atlas/domain/user"
)

// folder returns a replayer that folds events with evolve from the zero state.
func folder[S any](evolve func(S, domain.Event) S) func([]domain.Event) any {
	return func(evs []domain.Event) any {
		var s S
		for _, e := range evs {
			s = evolve(s, e)
		}
		return s
	}
}

// replayers rebuild each aggregate type's state from its events, by stream type. Every stream type
// of the project needs one (TestReplayCoversEveryAggregate).
var replayers = map[string]func([]domain.Event) any{
	user.StreamType:       folder(user.Evolve),
	space.StreamType:      folder(space.Evolve),
	apikey.StreamType:     folder(apikey.Evolve),
	org.StreamType:        folder(org.Evolve),
	note.StreamType:       folder(note.Evolve),
	file.StreamType:       folder(file.Evolve),
	file.FolderStreamType: folder(file.EvolveFolder),
	platform.StreamType:   folder(platform.Evolve),
	chat.StreamType:       folder(chat.Evolve),
	task.StreamType:       folder(task.Evolve),
}

type replayEvent struct {
	Position      string          `json:"position"`
	StreamVersion int64           `json:"stream_version"`
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	ActorID       *uuid.UUID      `json:"actor_id"`
	OccurredAt    time.Time       `json:"occurred_at"`
}

// replayCmd runs `atlas replay STREAM_ID [--at TIME]`: the stream's events recorded up to TIME (all
// of them without --at) and the aggregate state they rebuild, as one JSON document on stdout.
func replayCmd(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	atFlag := fs.String("at", "", "an RFC 3339 time: replay the events recorded up to it")
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--at" || a == "-at") && i+1 < len(args):
			flags = append(flags, a, args[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			flags = append(flags, a)
		default:
			rest = append(rest, a)
		}
	}
	if err := fs.Parse(flags); err != nil {
		return usageError(err.Error())
	}
	if len(rest) != 1 {
		return usageError("replay: exactly one STREAM_ID")
	}
	id, err := uuid.Parse(rest[0])
	if err != nil {
		return usageError(fmt.Sprintf("replay: %q is not a stream id (a UUID)", rest[0]))
	}
	at := time.Now()
	if *atFlag != "" {
		if at, err = time.Parse(time.RFC3339Nano, *atFlag); err != nil {
			return usageError(fmt.Sprintf("replay: --at %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", *atFlag))
		}
	}
	quiet := warnLogger(stderr)
	c, err := openCore(ctx, cfg, quiet)
	if err != nil {
		return err
	}
	defer c.Close()
	recs, err := c.store.ReadStream(ctx, id, 0)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("stream %s has no events", id)
	}
	out := struct {
		StreamID   uuid.UUID     `json:"stream_id"`
		StreamType string        `json:"stream_type"`
		At         time.Time     `json:"at"`
		Version    int64         `json:"version"`
		Events     []replayEvent `json:"events"`
		State      any           `json:"state"`
	}{StreamID: id, StreamType: recs[0].StreamType, At: at.UTC(), Events: []replayEvent{}}
	var evs []domain.Event
	for _, r := range recs {
		if r.RecordedAt.After(at) {
			break
		}
		data, err := json.Marshal(r.Event)
		if err != nil {
			return err
		}
		out.Events = append(out.Events, replayEvent{Position: r.Position.String(), StreamVersion: r.StreamVersion, Type: r.Name,
			Data: data, ActorID: r.Metadata.ActorID, OccurredAt: r.RecordedAt})
		evs = append(evs, r.Event)
		out.Version = r.StreamVersion
	}
	replay, ok := replayers[out.StreamType]
	if !ok {
		return fmt.Errorf("no replayer for streams of type %q", out.StreamType)
	}
	if len(evs) > 0 {
		out.State = replay(evs)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
