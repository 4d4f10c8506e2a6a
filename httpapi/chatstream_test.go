package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/eventstore"
)

// chatLog is a chat's stream in memory.
type chatLog struct{ recs []eventstore.Record }

func (l chatLog) ReadStream(_ context.Context, _ uuid.UUID, max int64) ([]eventstore.Record, error) {
	var out []eventstore.Record
	for _, r := range l.recs {
		if max <= 0 || r.StreamVersion <= max {
			out = append(out, r)
		}
	}
	return out, nil
}

func (l chatLog) ReadStreamAfter(_ context.Context, _ uuid.UUID, after int64, _ int) ([]eventstore.Record, error) {
	var out []eventstore.Record
	for _, r := range l.recs {
		if r.StreamVersion > after {
			out = append(out, r)
		}
	}
	return out, nil
}

type sent struct {
	id, event string
	data      map[string]any
}

// streamFixture is a chat whose reply "Hello world" was streamed as four deltas and persisted as two
// chunks.
type streamFixture struct {
	chatID, reply uuid.UUID
	log           chatLog
	deltas        []chat.Delta
}

func newStreamFixture() streamFixture {
	f := streamFixture{chatID: uuid.New(), reply: uuid.New()}
	msg := uuid.New()
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	evs := []domain.Event{
		chat.Created{ChatID: f.chatID, SpaceID: uuid.New(), Title: "T", CreatedAt: at},
		chat.MessagePosted{ChatID: f.chatID, MessageID: msg, Role: chat.RoleUser, Parts: []chat.Part{{Type: chat.PartText, Text: "hi"}}, PostedAt: at},
		chat.ReplyStarted{ChatID: f.chatID, MessageID: f.reply, ReplyTo: msg, StartedAt: at},
		chat.ReplyTextAppended{ChatID: f.chatID, MessageID: f.reply, Offset: 0, Reasoning: "Hm. ", AppendedAt: at},
		chat.ReplyTextAppended{ChatID: f.chatID, MessageID: f.reply, Offset: 4, Text: "Hello ", AppendedAt: at},
		chat.ReplyTextAppended{ChatID: f.chatID, MessageID: f.reply, Offset: 10, Text: "world", AppendedAt: at},
		chat.ReplyCompleted{ChatID: f.chatID, MessageID: f.reply, CompletedAt: at},
	}
	for i, e := range evs {
		f.log.recs = append(f.log.recs, eventstore.Record{StreamType: chat.StreamType, StreamID: f.chatID, StreamVersion: int64(i + 1), Event: e})
	}
	for _, d := range []struct {
		off       int64
		reasoning bool
		text      string
	}{{0, true, "Hm. "}, {4, false, "Hel"}, {7, false, "lo "}, {10, false, "wor"}, {13, false, "ld"}} {
		f.deltas = append(f.deltas, chat.Delta{MessageID: f.reply, Offset: d.off, Reasoning: d.reasoning, Text: d.text})
	}
	return f
}

// open makes a chat stream as the handler does for a client at pos, writing into a recorder.
func (f streamFixture) open(t *testing.T, pos chatStreamPosition) (*chatStream, *httptest.ResponseRecorder) {
	t.Helper()
	s := &Server{deps: Deps{Log: f.log}}
	rec := httptest.NewRecorder()
	c := echo.New().NewContext(httptest.NewRequest("GET", "/", nil), rec)
	var at chat.State
	for _, r := range f.log.recs {
		if r.StreamVersion <= pos.After {
			at = chat.Evolve(at, r.Event)
		}
	}
	cs := &chatStream{s: s, sse: startSSE(c), chatID: f.chatID, after: pos.After, done: map[uuid.UUID]bool{}}
	for id, m := range at.Messages {
		if m.Role == chat.RoleAssistant && m.Status != chat.StatusStreaming {
			cs.done[id] = true
		}
	}
	if at.Streaming != nil {
		cs.reply, cs.stored, cs.sent = at.Streaming.MessageID, at.Streaming.Offset, at.Streaming.Offset
		if pos.Offset > cs.sent {
			cs.sent = pos.Offset
		}
	}
	return cs, rec
}

func parseSent(t *testing.T, body string) []sent {
	t.Helper()
	var out []sent
	var cur sent
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" {
				out = append(out, cur)
			}
			cur = sent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(line[6:]), &cur.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// content joins the reasoning and text deltas sent.
func content(evs []sent) string {
	var b strings.Builder
	for _, e := range evs {
		if e.event == "message.delta" {
			b.WriteString(e.data["text"].(string))
		}
	}
	return b.String()
}

// step is one thing that reaches the handler: a persisted event (its version) or a live delta.
type step struct {
	version int64
	delta   int // index in deltas, when version is 0
}

// play feeds steps to cs and returns what it sent.
func (f streamFixture) play(t *testing.T, cs *chatStream, rec *httptest.ResponseRecorder, steps []step) []sent {
	t.Helper()
	for _, st := range steps {
		if st.version > 0 {
			if st.version <= cs.after {
				continue
			}
			if err := cs.persisted(context.Background(), f.log.recs[st.version-1]); err != nil {
				t.Fatal(err)
			}
		} else {
			cs.held = append(cs.held, f.deltas[st.delta])
		}
		if err := cs.live(); err != nil {
			t.Fatal(err)
		}
	}
	return parseSent(t, rec.Body.String())
}

// Interleavings of live deltas and persisted chunks deliver the reply's content once, in order; and a
// client resuming after any event id it was sent gets exactly the rest.
func TestChatStreamDeliversEachByteOnceAndResumesExactly(t *testing.T) {
	f := newStreamFixture()
	want := "Hm. Hello world"
	schedules := map[string][]step{
		"live first":      {{1, 0}, {2, 0}, {3, 0}, {0, 0}, {0, 1}, {0, 2}, {4, 0}, {5, 0}, {0, 3}, {0, 4}, {6, 0}, {7, 0}},
		"persisted first": {{1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {6, 0}, {0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {7, 0}},
		"live before start and gaps": {{0, 1}, {0, 3}, {1, 0}, {2, 0}, {3, 0}, {0, 0}, {4, 0}, {0, 2}, {5, 0}, {0, 4}, {6, 0},
			{7, 0}},
		"no live deltas": {{1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {6, 0}, {7, 0}},
	}
	for name, steps := range schedules {
		t.Run(name, func(t *testing.T) {
			cs, rec := f.open(t, chatStreamPosition{Offset: -1})
			evs := f.play(t, cs, rec, steps)
			if got := content(evs); got != want {
				t.Fatalf("content %q, want %q (%v)", got, want, evs)
			}
			if last := evs[len(evs)-1]; last.event != "message.completed" || last.id != "7" {
				t.Fatalf("last event %+v", last)
			}
			dotted := 0
			for _, e := range evs {
				if strings.Contains(e.id, ".") {
					dotted++
				}
			}
			if name == "live first" && dotted < 3 {
				t.Fatalf("live deltas ahead of the log carry %d offset ids: %v", dotted, evs)
			}
			// Resume after each event sent: what came before plus what comes after is everything.
			for i, cut := range evs {
				pos, err := parseChatEventID(cut.id)
				if err != nil {
					t.Fatalf("event id %q: %v", cut.id, err)
				}
				if !strings.HasPrefix(want, content(evs[:i+1])) {
					t.Fatalf("prefix %q", content(evs[:i+1]))
				}
				// The resumed stream sees the rest of the log and the live snapshot in any order.
				for _, rest := range [][]step{
					{{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {4, 0}, {5, 0}, {6, 0}, {7, 0}},
					{{4, 0}, {5, 0}, {6, 0}, {7, 0}, {0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}},
				} {
					cs2, rec2 := f.open(t, pos)
					after := f.play(t, cs2, rec2, append([]step{{1, 0}, {2, 0}, {3, 0}}, rest...))
					if got := content(evs[:i+1]) + content(after); got != want {
						t.Fatalf("resumed after %q: %q + %q, want %q", cut.id, content(evs[:i+1]), content(after), want)
					}
				}
			}
		})
	}
}

func TestParseChatEventID(t *testing.T) {
	for _, tc := range []struct {
		in      string
		after   int64
		offset  int64
		invalid bool
	}{
		{"", 0, -1, false}, {"7", 7, -1, false}, {"7.42", 7, 42, false},
		{"x", 0, 0, true}, {"-1", 0, 0, true}, {"7.", 0, 0, true}, {"7.x", 0, 0, true}, {"7.-3", 0, 0, true},
	} {
		p, err := parseChatEventID(tc.in)
		if (err != nil) != tc.invalid || (!tc.invalid && (p.After != tc.after || p.Offset != tc.offset)) {
			t.Errorf("parseChatEventID(%q) = %+v, %v", tc.in, p, err)
		}
	}
}
