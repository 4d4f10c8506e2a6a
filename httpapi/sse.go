package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/eventstore"
)

// CloseStreams ends every live stream (SSE) now and any opened later; call it when shutting down
// (http.Server.RegisterOnShutdown), since Shutdown waits for in-flight requests to end.
func (s *Server) CloseStreams() { s.stopStreams() }

// streamContext is the request's context, also ended by CloseStreams.
func (s *Server) streamContext(c echo.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.Request().Context())
	stop := context.AfterFunc(s.streams, cancel)
	return ctx, func() { stop(); cancel() }
}

// keepAlive is how often an idle live stream sends a comment, so that proxies and clients keep the
// connection open and a client that went away is noticed.
const keepAlive = 15 * time.Second

// followBatch bounds the events read per poll of a live stream.
const followBatch = 500

// sseStream writes Server-Sent Events (text/event-stream) to one client, flushing after each event.
type sseStream struct {
	c       echo.Context
	flusher http.Flusher
}

// startSSE sends the headers of an event stream and flushes them, so the client sees the stream open
// before the first event.
func startSSE(c echo.Context) *sseStream {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no") // reverse proxies: do not buffer the stream
	c.Response().WriteHeader(http.StatusOK)
	s := &sseStream{c: c}
	s.flusher, _ = c.Response().Writer.(http.Flusher)
	s.flush()
	return s
}

func (s *sseStream) flush() {
	if s.flusher != nil {
		s.flusher.Flush()
	} else {
		s.c.Response().Flush()
	}
}

// Send writes one event: its id (omitted when empty; clients resume after it with Last-Event-ID), its
// name and data as JSON on one line.
func (s *sseStream) Send(id, event string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", event, err)
	}
	var w strings.Builder
	if id != "" {
		w.WriteString("id: " + sseLine(id) + "\n")
	}
	if event != "" {
		w.WriteString("event: " + sseLine(event) + "\n")
	}
	w.WriteString("data: ")
	w.Write(b) // json.Marshal escapes control characters, so the data is one line
	w.WriteString("\n\n")
	if _, err := s.c.Response().Write([]byte(w.String())); err != nil {
		return err
	}
	s.flush()
	return nil
}

// Comment writes a comment line, which clients ignore: a keep-alive.
func (s *sseStream) Comment(text string) error {
	if _, err := s.c.Response().Write([]byte(": " + sseLine(text) + "\n\n")); err != nil {
		return err
	}
	s.flush()
	return nil
}

// sseLine keeps a field on one line: a newline would end the field and start another.
func sseLine(v string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
}

// lastEventID is where a reconnecting client resumes: the Last-Event-ID header that EventSource
// sends, else the last_event_id query parameter (for clients that cannot set headers).
func lastEventID(c echo.Context) string {
	if v := c.Request().Header.Get("Last-Event-ID"); v != "" {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(c.QueryParam("last_event_id"))
}

// followStream sends every event of streamID with a version above after through emit, oldest first,
// then waits for new ones and sends them too, until the client goes away, the server shuts down, or emit
// reports done. It wakes on the event store's signal (appends in this process, and NOTIFY from
// others), polls every FollowPoll as a fallback, and sends a keep-alive comment when idle.
func (s *Server) followStream(c echo.Context, sse *sseStream, streamID uuid.UUID, after int64,
	emit func(r eventstore.Record) (done bool, err error)) error {
	ctx, cancel := s.streamContext(c)
	defer cancel()
	idleSince := time.Now()
	for {
		var wake <-chan struct{}
		if s.deps.Signal != nil {
			_, wake, _ = s.deps.Signal.Snapshot() // taken before the read: an append after it wakes us
		}
		recs, err := s.deps.Log.ReadStreamAfter(ctx, streamID, after, followBatch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, r := range recs {
			done, err := emit(r)
			if err != nil {
				return err
			}
			after = r.StreamVersion
			if done {
				return nil
			}
		}
		if len(recs) == followBatch {
			continue // more are waiting
		}
		if len(recs) > 0 {
			idleSince = time.Now()
		}
		if time.Since(idleSince) >= keepAlive {
			if err := sse.Comment("keep-alive"); err != nil {
				return nil // the client went away
			}
			idleSince = time.Now()
		}
		if err := waitWake(ctx, wake, min(s.deps.FollowPoll, keepAlive)); err != nil {
			return nil
		}
	}
}

// waitWake waits for wake to close, d to pass, or ctx to end (its error).
func waitWake(ctx context.Context, wake <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
		return nil
	case <-t.C:
		return nil
	}
}
