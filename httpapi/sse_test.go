package httpapi

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/eventstore"
)

// memLog is an in-memory stream of numbered events, for the stream-following mechanics alone.
type memLog struct {
	mu   sync.Mutex
	recs []eventstore.Record
}

func (l *memLog) add(sig *eventstore.Signal, id uuid.UUID) {
	l.mu.Lock()
	l.recs = append(l.recs, eventstore.Record{StreamID: id, StreamVersion: int64(len(l.recs) + 1)})
	l.mu.Unlock()
	sig.Notify(0)
}

func (l *memLog) ReadStream(ctx context.Context, id uuid.UUID, maxVersion int64) ([]eventstore.Record, error) {
	return l.ReadStreamAfter(ctx, id, 0, 0)
}

func (l *memLog) ReadStreamAfter(_ context.Context, _ uuid.UUID, after int64, limit int) ([]eventstore.Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []eventstore.Record
	for _, r := range l.recs {
		if r.StreamVersion > after && (limit <= 0 || len(out) < limit) {
			out = append(out, r)
		}
	}
	return out, nil
}

// sseEvent is one parsed event of a stream.
type sseEvent struct{ id, event, data string }

// readEvents parses events from an SSE body into a channel until it ends.
func readEvents(body *bufio.Scanner) <-chan sseEvent {
	ch := make(chan sseEvent, 1000)
	go func() {
		defer close(ch)
		var ev sseEvent
		for body.Scan() {
			line := body.Text()
			switch {
			case line == "":
				if ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

func TestFollowStreamResumesAndFollows(t *testing.T) {
	sig := eventstore.NewSignal()
	log := &memLog{}
	id := uuid.New()
	// A slow fallback poll: only the signal can deliver events within the test's deadlines.
	s := New(Deps{Log: log, Signal: sig, FollowPoll: time.Hour})
	e := echo.New()
	e.GET("/follow", func(c echo.Context) error {
		after, _ := strconv.ParseInt(lastEventID(c), 10, 64)
		sse := startSSE(c)
		return s.followStream(c, sse, id, after, func(r eventstore.Record) (bool, error) {
			return r.StreamVersion == 1000, sse.Send(strconv.FormatInt(r.StreamVersion, 10), "tick", map[string]any{"v": r.StreamVersion, "text": "a\nb"})
		})
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	for range 3 {
		log.add(sig, id)
	}

	open := func(last string) (*http.Response, <-chan sseEvent) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/follow", nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		return resp, readEvents(bufio.NewScanner(resp.Body))
	}
	next := func(ch <-chan sseEvent) sseEvent {
		t.Helper()
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5 s")
		}
		return sseEvent{}
	}

	resp, ch := open("")
	for want := 1; want <= 3; want++ {
		if ev := next(ch); ev.id != strconv.Itoa(want) || ev.event != "tick" || !strings.Contains(ev.data, `"text":"a\nb"`) {
			t.Fatalf("event %+v, want id %d", ev, want)
		}
	}
	log.add(sig, id) // version 4, woken by the signal
	if ev := next(ch); ev.id != "4" {
		t.Fatalf("live event %+v", ev)
	}
	resp.Body.Close()

	// Reconnect after 2: 3 and 4 again, then live ones; nothing skipped, nothing twice.
	log.add(sig, id) // 5, while no one listens
	resp, ch = open("2")
	defer resp.Body.Close()
	for want := 3; want <= 5; want++ {
		if ev := next(ch); ev.id != strconv.Itoa(want) {
			t.Fatalf("after reconnect got %+v, want %d", ev, want)
		}
	}

	// Shutting the server down ends live streams.
	s.CloseStreams()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after CloseStreams")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after CloseStreams")
	}
}
