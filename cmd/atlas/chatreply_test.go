package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/internal/llmtest"
	"github.com/atlas-workspace/atlas/search/index"
)

// sseEvent is one Server-Sent Event as a client reads it.
type sseEvent struct {
	ID, Event string
	Data      map[string]any
	At        time.Time
}

// sseClient reads a chat stream in the background.
type sseClient struct {
	t      *testing.T
	events chan sseEvent
	cancel context.CancelFunc
	done   chan struct{}
	status int
}

// openStream connects to GET path with the token, resuming after lastID when it is not empty.
func (s *server) openStream(path, token, lastID string) *sseClient {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	c := &sseClient{t: s.t, events: make(chan sseEvent, 10000), cancel: cancel, done: make(chan struct{}), status: res.StatusCode}
	go func() {
		defer close(c.done)
		defer close(c.events)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" {
					ev.At = time.Now()
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.Data)
			}
		}
	}()
	s.t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	<-c.done
}

// next returns the next event, failing the test after d.
func (c *sseClient) next(d time.Duration) sseEvent {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(d):
		c.t.Fatal("no stream event within", d)
	}
	return sseEvent{}
}

// until reads events until one named name arrives, and returns them all.
func (c *sseClient) until(name string, d time.Duration) []sseEvent {
	c.t.Helper()
	var out []sseEvent
	deadline := time.Now().Add(d)
	for {
		ev := c.next(time.Until(deadline))
		out = append(out, ev)
		if ev.Event == name {
			return out
		}
	}
}

// replyText joins the text deltas of a message.
func replyText(evs []sseEvent, messageID string) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Event == "message.delta" && ev.Data["message_id"] == messageID && ev.Data["type"] == "text" {
			b.WriteString(ev.Data["text"].(string))
		}
	}
	return b.String()
}

// assistantServer starts Atlas with the fake provider as its model.
func assistantServer(t *testing.T, extra map[string]string) (*server, *llmtest.Server) {
	t.Helper()
	llm := llmtest.Start(t)
	env := map[string]string{"LLM_URL": llm.URL, "LLM_MODEL": "fake-model", "LLM_API_KEY": "k"}
	for k, v := range extra {
		env[k] = v
	}
	return startServerWith(t, env), llm
}

// newChat registers a user and makes a chat in their personal space.
func (s *server) newChat(email string) (token, spaceID, chatID string) {
	s.t.Helper()
	token, _, spaceID = s.register(email, "User")
	r := s.do("POST", "/api/v1/spaces/"+spaceID+"/chats", token, map[string]any{"title": "Chat"})
	expect(s.t, r, 201, "")
	return token, spaceID, r.json(s.t)["id"].(string)
}

// post posts a user message and returns the answer.
func (s *server) post(token, chatID, text string) map[string]any {
	s.t.Helper()
	r := s.do("POST", "/api/v1/chats/"+chatID+"/messages", token, textMessage(text))
	expect(s.t, r, 201, "")
	return r.json(s.t)
}

// message reads one message of a chat once it has the status.
func (s *server) waitMessage(token, chatID, id, status string) map[string]any {
	s.t.Helper()
	var m map[string]any
	waitFor(s.t, 10*time.Second, "message "+id+" "+status, func() bool {
		r := s.do("GET", "/api/v1/chats/"+chatID+"/messages/"+id, token, nil)
		if r.status != 200 {
			return false
		}
		m = r.json(s.t)
		return m["status"] == status
	})
	return m
}

func partsText(m map[string]any, kind string) string {
	var b strings.Builder
	for _, p := range m["parts"].([]any) {
		if p := p.(map[string]any); p["type"] == kind {
			b.WriteString(p["text"].(string))
		}
	}
	return b.String()
}

// TestChatReplyStreams posts a message: the reply's deltas reach an SSE subscriber before it
// completes, it is persisted in coarse chunks (not one event per delta), and the final message is
// whole and in order.
func TestChatReplyStreams(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, _, chatID := s.newChat("stream@example.com")
	var r resp
	waitFor(t, 5*time.Second, "the chat to be readable", func() bool {
		r = s.do("GET", "/api/v1/chats/"+chatID, token, nil)
		return r.status == 200
	})
	if a := r.json(t)["assistant"].(map[string]any); a["configured"] != true || a["model"] != "fake-model" {
		t.Fatalf("assistant: %s", r.body)
	}
	var deltas []string
	for i := 0; i < 40; i++ {
		deltas = append(deltas, "w"+string(rune('a'+i%26))+" ")
	}
	llm.Push(llmtest.Reply{Reasoning: []string{"Thinking", " hard."}, Deltas: deltas, DeltaDelay: 25 * time.Millisecond})
	stream := s.openStream("/api/v1/chats/"+chatID+"/stream", token, "")
	m := s.post(token, chatID, "Tell me something")
	reply := m["reply"].(map[string]any)
	if reply["status"] != "streaming" || m["assistant"].(map[string]any)["configured"] != true {
		t.Fatalf("post: %v", m)
	}
	replyID := reply["id"].(string)
	evs := stream.until("message.completed", 20*time.Second)
	want := strings.Join(deltas, "")
	if got := replyText(evs, replyID); got != want {
		t.Fatalf("streamed text %q, want %q", got, want)
	}
	// Deltas arrived before the completion, spread over the reply's time.
	var firstDelta, completed time.Time
	created := 0
	for _, ev := range evs {
		switch ev.Event {
		case "message.delta":
			if firstDelta.IsZero() {
				firstDelta = ev.At
			}
		case "message.completed":
			completed = ev.At
			if partsText(ev.Data, "text") != want || partsText(ev.Data, "reasoning") != "Thinking hard." {
				t.Fatalf("completed message: %v", ev.Data)
			}
		case "message.created":
			created++
		}
	}
	if created != 2 || firstDelta.IsZero() || completed.Sub(firstDelta) < 500*time.Millisecond {
		t.Fatalf("%d message.created; first delta at %v, completion at %v: deltas did not stream", created, firstDelta, completed)
	}
	final := s.waitMessage(token, chatID, replyID, "complete")
	if partsText(final, "text") != want || partsText(final, "reasoning") != "Thinking hard." || final["model"] != "fake-model" {
		t.Fatalf("stored reply: %v", final)
	}
	// Coarse chunks: far fewer chunk events than deltas.
	var chunks int
	if err := s.app.Pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = 'chat.reply_text_appended'`, chatID).Scan(&chunks); err != nil {
		t.Fatal(err)
	}
	if chunks == 0 || chunks > len(deltas)/3 {
		t.Fatalf("%d chunk events for %d deltas", chunks, len(deltas))
	}
	// The provider got the conversation.
	req := llm.Requests()[0]
	if req.Model != "fake-model" || req.Messages[len(req.Messages)-1].Content != "Tell me something" || !req.Stream {
		t.Fatalf("provider request: %+v", req)
	}
	// A second message while nothing streams works; its reply sees the first exchange.
	m = s.post(token, chatID, "And again")
	s.waitMessage(token, chatID, m["reply"].(map[string]any)["id"].(string), "complete")
	msgs := llm.Requests()[1].Messages
	if len(msgs) != 4 || msgs[2].Role != "assistant" || msgs[2].Content != want {
		t.Fatalf("second request's conversation: %+v", msgs)
	}
}

// TestChatReplyFailures: a provider error mid-stream and a stalled stream end the reply as failed
// with the reason, keeping what was written; a provider that refuses fails it too.
func TestChatReplyFailures(t *testing.T) {
	s, llm := assistantServer(t, map[string]string{"LLM_IDLE_TIMEOUT": "1s", "ATLAS_CHAT_STALE_AFTER": "1m"})
	token, _, chatID := s.newChat("failures@example.com")
	stream := s.openStream("/api/v1/chats/"+chatID+"/stream", token, "")

	llm.Push(llmtest.Reply{Deltas: []string{"Hel", "lo", " there"}, FailAfter: 2})
	m := s.post(token, chatID, "one")
	id := m["reply"].(map[string]any)["id"].(string)
	evs := stream.until("message.failed", 20*time.Second)
	if ev := evs[len(evs)-1]; ev.Data["message_id"] != id || !strings.Contains(ev.Data["error"].(string), "provider") {
		t.Fatalf("failed event: %v", ev.Data)
	}
	final := s.waitMessage(token, chatID, id, "failed")
	if partsText(final, "text") != "Hello" || !strings.Contains(final["error"].(string), "provider") {
		t.Fatalf("failed reply: %v", final)
	}

	llm.Push(llmtest.Reply{Deltas: []string{"Wait", " for", " it"}, StallAfter: 1})
	m = s.post(token, chatID, "two")
	id = m["reply"].(map[string]any)["id"].(string)
	evs = stream.until("message.failed", 20*time.Second)
	if ev := evs[len(evs)-1]; ev.Data["message_id"] != id || !strings.Contains(ev.Data["error"].(string), "stall") {
		t.Fatalf("stalled event: %v", ev.Data)
	}
	if final = s.waitMessage(token, chatID, id, "failed"); partsText(final, "text") != "Wait" {
		t.Fatalf("stalled reply: %v", final)
	}

	llm.Push(llmtest.Reply{Status: 400})
	m = s.post(token, chatID, "three")
	id = m["reply"].(map[string]any)["id"].(string)
	if final = s.waitMessage(token, chatID, id, "failed"); !strings.Contains(final["error"].(string), "400") {
		t.Fatalf("refused reply: %v", final)
	}
	metrics := string(s.do("GET", "/metrics", "", nil).body)
	for _, want := range []string{`atlas_chat_replies_total{outcome="provider_error"} 2`, `atlas_chat_replies_total{outcome="stalled"} 1`, "atlas_chat_replies_running 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestChatReplyCancel cancels a reply being written: it stops, keeps what it had, and a new message
// can be posted; while it ran, another post was refused.
func TestChatReplyCancel(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, _, chatID := s.newChat("cancel@example.com")
	var deltas []string
	for i := 0; i < 200; i++ {
		deltas = append(deltas, "x ")
	}
	llm.Push(llmtest.Reply{Deltas: deltas, DeltaDelay: 50 * time.Millisecond})
	stream := s.openStream("/api/v1/chats/"+chatID+"/stream", token, "")
	m := s.post(token, chatID, "go on")
	id := m["reply"].(map[string]any)["id"].(string)
	stream.until("message.delta", 10*time.Second)
	expect(t, s.do("POST", "/api/v1/chats/"+chatID+"/messages", token, textMessage("meanwhile")), 409, "conflict")
	// Cancel once some of the reply is persisted (text only streamed live when the cancel lands is
	// not part of the stored reply).
	waitFor(t, 10*time.Second, "a persisted chunk", func() bool {
		r := s.do("GET", "/api/v1/chats/"+chatID+"/messages/"+id, token, nil)
		return r.status == 200 && partsText(r.json(t), "text") != ""
	})
	r := s.do("POST", "/api/v1/chats/"+chatID+"/messages/"+id+"/cancel", token, nil)
	expect(t, r, 200, "")
	evs := stream.until("message.cancelled", 10*time.Second)
	if ev := evs[len(evs)-1]; ev.Data["message_id"] != id {
		t.Fatalf("cancelled event: %v", ev.Data)
	}
	final := s.waitMessage(token, chatID, id, "cancelled")
	if n := len(partsText(final, "text")); n == 0 || n >= 400 {
		t.Fatalf("cancelled reply kept %d bytes", n)
	}
	expect(t, s.do("POST", "/api/v1/chats/"+chatID+"/messages/"+id+"/cancel", token, nil), 409, "conflict")
	waitFor(t, 5*time.Second, "the writer to stop", func() bool { return s.app.Assistant.Running() == 0 })
	m = s.post(token, chatID, "next")
	s.waitMessage(token, chatID, m["reply"].(map[string]any)["id"].(string), "complete")
}

// TestChatStreamResumes reconnects mid-reply with Last-Event-ID, several times: the client's text
// is the whole reply, nothing missing and nothing twice.
func TestChatStreamResumes(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, _, chatID := s.newChat("resume@example.com")
	var deltas []string
	for i := 0; i < 120; i++ {
		deltas = append(deltas, string(rune('a'+i%26)))
	}
	llm.Push(llmtest.Reply{Deltas: deltas, DeltaDelay: 15 * time.Millisecond})
	want := strings.Join(deltas, "")
	stream := s.openStream("/api/v1/chats/"+chatID+"/stream", token, "")
	m := s.post(token, chatID, "count")
	id := m["reply"].(map[string]any)["id"].(string)
	var all []sseEvent
	var fromZero *sseClient
	lastID := ""
	for round := 0; ; round++ {
		// Read a few events, then drop the connection and resume after the last id seen.
		done := false
		for n := 0; n < 7+round; n++ {
			ev := stream.next(20 * time.Second)
			all = append(all, ev)
			lastID = ev.ID
			if ev.Event == "message.completed" {
				done = true
				break
			}
		}
		stream.close()
		if done {
			break
		}
		if round == 0 {
			// A client that starts from the beginning while the reply is being written.
			fromZero = s.openStream("/api/v1/chats/"+chatID+"/stream", token, "0")
		}
		stream = s.openStream("/api/v1/chats/"+chatID+"/stream", token, lastID)
	}
	if got := replyText(fromZero.until("message.completed", 20*time.Second), id); got != want {
		t.Fatalf("from the beginning, mid-reply: %q, want %q", got, want)
	}
	if got := replyText(all, id); got != want {
		t.Fatalf("text over reconnects %q, want %q", got, want)
	}
	created := 0
	for _, ev := range all {
		if ev.Event == "message.created" {
			created++
		}
	}
	if created != 2 {
		t.Fatalf("%d message.created events over reconnects, want 2", created)
	}
	// Resuming from the start of the chat replays everything once, from the persisted chunks.
	for _, from := range []string{"0", "1"} {
		replay := s.openStream("/api/v1/chats/"+chatID+"/stream", token, from)
		evs := replay.until("message.completed", 10*time.Second)
		if got := replyText(evs, id); got != want {
			t.Fatalf("replayed from %s: text %q, want %q", from, got, want)
		}
		replay.close()
	}
	if c := s.openStream("/api/v1/chats/"+chatID+"/stream", token, "x.1"); c.status != 400 {
		t.Fatalf("a malformed Last-Event-ID: status %d", c.status)
	}
}

// TestChatReplySearchTool: the model calls the search tool; Atlas searches what the user may read
// in the space, stores the call and its result as parts, and the model answers with text.
func TestChatReplySearchTool(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, spaceID, chatID := s.newChat("tools@example.com")
	r := s.do("POST", "/api/v1/spaces/"+spaceID+"/notes", token, map[string]string{"title": "Packing list", "body": "Bring the zanzibarian umbrella."})
	expect(t, r, 201, "")
	noteID := r.json(t)["id"].(string)
	s.waitIndexed(token, "/api/v1/notes/"+noteID)
	other, _, otherSpace := s.register("tools-other@example.com", "Other")
	expect(t, s.do("POST", "/api/v1/spaces/"+otherSpace+"/notes", other, map[string]string{"title": "Zanzibarian secrets", "body": "zanzibarian"}), 201, "")

	llm.Push(llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "search", Arguments: `{"query":"zanzibarian","mode":"keyword"}`}}},
		llmtest.Reply{Deltas: []string{"Bring", " the umbrella."}})
	m := s.post(token, chatID, "What should I pack?")
	id := m["reply"].(map[string]any)["id"].(string)
	final := s.waitMessage(token, chatID, id, "complete")
	parts := final["parts"].([]any)
	if len(parts) != 3 {
		t.Fatalf("reply parts: %v", parts)
	}
	call, result := parts[0].(map[string]any), parts[1].(map[string]any)
	if call["type"] != "tool-call" || call["tool_name"] != "search" || call["tool_call_id"] != "call_1" ||
		call["input"].(map[string]any)["query"] != "zanzibarian" {
		t.Fatalf("tool call part: %v", call)
	}
	results := result["output"].(map[string]any)["results"].([]any)
	if result["type"] != "tool-result" || result["tool_call_id"] != "call_1" || len(results) != 1 || results[0].(map[string]any)["id"] != noteID {
		t.Fatalf("tool result part (only the user's own note may be found): %v", result)
	}
	if partsText(final, "text") != "Bring the umbrella." {
		t.Fatalf("answer: %v", final)
	}
	reqs := llm.Requests()
	if len(reqs) != 2 || len(reqs[0].ToolNames()) != 1 || reqs[0].ToolNames()[0] != "search" {
		t.Fatalf("requests: %+v", reqs)
	}
	last := reqs[1].Messages[len(reqs[1].Messages)-1]
	if last.Role != "tool" || last.ToolCallID != "call_1" || !strings.Contains(last.Content, noteID) {
		t.Fatalf("the tool result sent back: %+v", last)
	}
}

// TestChatReplyInterrupted: a reply whose writer is gone (a crash) is failed as interrupted by the
// sweeper once it has made no progress for ATLAS_CHAT_STALE_AFTER.
func TestChatReplyInterrupted(t *testing.T) {
	s, _ := assistantServer(t, map[string]string{"LLM_IDLE_TIMEOUT": "1s", "ATLAS_CHAT_STALE_AFTER": "2s", "ATLAS_CHAT_SWEEP_INTERVAL": "200ms"})
	token, _, chatID := s.newChat("crash@example.com")
	// A reply started by a process that died before writing it: the post's events without a writer.
	cc := commandsContext(t, s, token)
	res, err := s.app.Commands.PostMessage(t.Context(), cc, uuidOf(t, chatID), 0, "user", textParts("hello"), "fake-model")
	if err != nil || res.ReplyID == nil {
		t.Fatalf("post: %v", err)
	}
	m := s.waitMessage(token, chatID, res.ReplyID.String(), "failed")
	if m["error"] != "interrupted" {
		t.Fatalf("interrupted reply: %v", m)
	}
}

// commandsContext is the command context of the user behind token, for commands run directly.
func commandsContext(t *testing.T, s *server, token string) commands.Context {
	t.Helper()
	r := s.do("GET", "/api/v1/me", token, nil)
	expect(t, r, 200, "")
	return commands.Context{Actor: uuidOf(t, r.json(t)["id"].(string))}
}

func uuidOf(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func textParts(text string) []chat.Part { return []chat.Part{{Type: chat.PartText, Text: text}} }

// TestChatSearch: a chat is indexed with its user messages and completed replies (one document per
// chat), found by those who may read its space and by kind, and removed from the index when the
// chat is deleted.
func TestChatSearch(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, spaceID, chatID := s.newChat("chat-search@example.com")
	other, _, _ := s.register("chat-search-other@example.com", "Other")
	llm.Push(llmtest.Reply{Deltas: []string{"The", " wombatgala", " is in May."}})
	m := s.post(token, chatID, "When is the quokkafest?")
	s.waitMessage(token, chatID, m["reply"].(map[string]any)["id"].(string), "complete")
	for _, word := range []string{"quokkafest", "wombatgala"} {
		waitFor(t, 60*time.Second, "the chat found by "+word, func() bool {
			ids, _ := s.searchIDs(token, word, "mode", "keyword")
			return contains(ids, chatID)
		})
	}
	if ids, _ := s.searchIDs(token, "wombatgala", "kinds", "chat", "space_id", spaceID); !contains(ids, chatID) {
		t.Fatalf("kinds=chat does not find the chat: %v", ids)
	}
	if ids, _ := s.searchIDs(token, "wombatgala", "kinds", "note"); contains(ids, chatID) {
		t.Fatalf("kinds=note finds the chat: %v", ids)
	}
	for _, mode := range []string{"keyword", "hybrid", "semantic"} {
		if ids, _ := s.searchIDs(other, "wombatgala quokkafest", "mode", mode); contains(ids, chatID) {
			t.Fatalf("%s: a stranger finds the chat: %v", mode, ids)
		}
	}
	expect(t, s.do("DELETE", "/api/v1/chats/"+chatID, token, nil), 200, "")
	waitFor(t, 60*time.Second, "the chat's search entries to go", func() bool {
		var n int
		if err := s.app.ProjectorPool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM search_docs WHERE doc_id = $1) + (SELECT count(*) FROM search_work WHERE doc_id = $1)`, chatID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	if ids, _ := s.searchIDs(token, "wombatgala", "mode", "keyword"); contains(ids, chatID) {
		t.Fatalf("a deleted chat is found: %v", ids)
	}
	hits, err := s.app.Indexer.Index.Search(t.Context(), index.Query{Tenants: []string{s.userID(token)}, Text: "wombatgala", Mode: index.Keyword, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		if h.DocID.String() == chatID {
			t.Fatalf("the index still holds the deleted chat: %+v", h)
		}
	}
}

// userID is the id of the user behind token.
func (s *server) userID(token string) string {
	s.t.Helper()
	r := s.do("GET", "/api/v1/me", token, nil)
	expect(s.t, r, 200, "")
	return r.json(s.t)["id"].(string)
}

// TestChatReplyCancelFromAnotherProcess cancels a reply through the command side only, as another
// process would: the writer finds out on its next append (a version conflict), reloads, sees the
// cancel and stops without writing more.
func TestChatReplyCancelFromAnotherProcess(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, _, chatID := s.newChat("cancel-elsewhere@example.com")
	var deltas []string
	for i := 0; i < 300; i++ {
		deltas = append(deltas, "y ")
	}
	llm.Push(llmtest.Reply{Deltas: deltas, DeltaDelay: 20 * time.Millisecond})
	m := s.post(token, chatID, "go on")
	id := m["reply"].(map[string]any)["id"].(string)
	waitFor(t, 10*time.Second, "a persisted chunk", func() bool {
		r := s.do("GET", "/api/v1/chats/"+chatID+"/messages/"+id, token, nil)
		return r.status == 200 && partsText(r.json(t), "text") != ""
	})
	res, err := s.app.Commands.CancelReply(t.Context(), commandsContext(t, s, token), uuidOf(t, chatID), uuidOf(t, id))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the writer to stop", func() bool { return s.app.Assistant.Running() == 0 })
	recs, err := s.app.Store.ReadStream(t.Context(), uuidOf(t, chatID), 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := recs[len(recs)-1]; last.StreamVersion != res.Chat.Version || last.Name != chat.EventReplyCancelled {
		t.Fatalf("after the cancel (version %d) the stream ends with %s at %d", res.Chat.Version, last.Name, last.StreamVersion)
	}
	if len(llm.Requests()) != 1 {
		t.Fatalf("%d model requests", len(llm.Requests()))
	}
}

// TestChatPersonalDataIsSealed: the free text of a chat in a personal space (title, messages,
// reply chunks) is stored sealed with the owner's key; in an organization's space it is not.
func TestChatPersonalDataIsSealed(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, _, chatID := s.newChat("sealed@example.com")
	llm.Push(llmtest.Reply{Deltas: []string{"reply-kumquat"}})
	m := s.post(token, chatID, "message-kumquat")
	s.waitMessage(token, chatID, m["reply"].(map[string]any)["id"].(string), "complete")
	r := s.do("POST", "/api/v1/orgs", token, map[string]string{"name": "Org", "slug": "org-sealed"})
	expect(t, r, 201, "")
	r = s.do("POST", "/api/v1/spaces", token, map[string]any{"org_id": r.json(t)["id"], "name": "Team", "slug": "team"})
	expect(t, r, 201, "")
	r = s.do("POST", "/api/v1/spaces/"+r.json(t)["id"].(string)+"/chats", token, map[string]any{"title": "team-kumquat"})
	expect(t, r, 201, "")
	orgChat := r.json(t)["id"].(string)
	count := func(stream, word string) int {
		var n int
		if err := s.app.Pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE stream_id = $1 AND data::text LIKE '%' || $2 || '%'`, stream, word).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(chatID, "kumquat") + count(chatID, "Chat"); n != 0 {
		t.Fatalf("%d events of a personal chat hold its text in the clear", n)
	}
	if count(orgChat, "team-kumquat") != 1 {
		t.Fatal("an organization's chat title is not stored as it is")
	}
	// Read back, the text is there.
	r = s.do("GET", "/api/v1/chats/"+chatID+"/messages", token, nil)
	if !strings.Contains(string(r.body), "message-kumquat") || !strings.Contains(string(r.body), "reply-kumquat") {
		t.Fatalf("messages: %s", r.body)
	}
}

// TestChatReplyEndsWithItsSpaceAndAtShutdown: deleting the chat's space stops a reply being written
// (failed, nothing more appended); stopping the server fails the replies it writes as interrupted.
func TestChatReplyEndsWithItsSpaceAndAtShutdown(t *testing.T) {
	s, llm := assistantServer(t, nil)
	slow := func() llmtest.Reply {
		r := llmtest.Reply{DeltaDelay: 50 * time.Millisecond}
		for i := 0; i < 400; i++ {
			r.Deltas = append(r.Deltas, "z ")
		}
		return r
	}
	token, _, _ := s.newChat("space-gone@example.com")
	r := s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Other", "slug": "other"})
	expect(t, r, 201, "")
	spaceID := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+spaceID+"/chats", token, map[string]any{})
	expect(t, r, 201, "")
	chatID := r.json(t)["id"].(string)
	llm.Push(slow())
	m := s.post(token, chatID, "go")
	id := uuidOf(t, m["reply"].(map[string]any)["id"].(string))
	waitFor(t, 10*time.Second, "the reply to start", func() bool { return s.app.Assistant.Running() == 1 })
	expect(t, s.do("DELETE", "/api/v1/spaces/"+spaceID, token, nil), 200, "")
	waitFor(t, 10*time.Second, "the writer to stop", func() bool { return s.app.Assistant.Running() == 0 })
	st, _, err := s.app.Commands.Chat(t.Context(), uuidOf(t, chatID), 0)
	if err != nil || st.Messages[id].Status != chat.StatusFailed {
		t.Fatalf("reply in a deleted space: %+v %v", st.Messages[id], err)
	}

	token2, _, chat2 := s.newChat("shutdown@example.com")
	llm.Push(slow())
	m = s.post(token2, chat2, "go")
	id = uuidOf(t, m["reply"].(map[string]any)["id"].(string))
	waitFor(t, 10*time.Second, "the reply to start", func() bool { return s.app.Assistant.Running() == 1 })
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	st, _, err = s.app.Commands.Chat(context.Background(), uuidOf(t, chat2), 0)
	if err != nil || st.Messages[id].Status != chat.StatusFailed {
		t.Fatalf("reply at shutdown: %+v %v", st.Messages[id], err)
	}
	recs, _ := s.app.Store.ReadStream(context.Background(), uuidOf(t, chat2), 0)
	if f, ok := recs[len(recs)-1].Event.(chat.ReplyFailed); !ok || f.Reason != chat.ReasonInterrupted {
		t.Fatalf("the stream ends with %+v", recs[len(recs)-1].Event)
	}
}

// TestChatReplyToolRoundsAreCapped: a model that keeps calling tools gets at most 4 rounds with
// tools, then one without, and must answer; malformed arguments and unknown tools come back to it as
// errors, and every call and result is stored.
func TestChatReplyToolRoundsAreCapped(t *testing.T) {
	s, llm := assistantServer(t, nil)
	token, _, chatID := s.newChat("tool-rounds@example.com")
	llm.Push(
		llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "c1", Name: "search", Arguments: `{"query":`}}},
		llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "c2", Name: "browse", Arguments: `{}`}}},
		llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "c3", Name: "search", Arguments: `{"query":""}`}}},
		llmtest.Reply{ToolCalls: []llmtest.ToolCall{{ID: "c4", Name: "search", Arguments: `{"query":"x","mode":"fuzzy"}`}}},
		llmtest.Reply{Deltas: []string{"Done."}},
	)
	m := s.post(token, chatID, "look around")
	final := s.waitMessage(token, chatID, m["reply"].(map[string]any)["id"].(string), "complete")
	parts := final["parts"].([]any)
	if len(parts) != 9 || partsText(final, "text") != "Done." {
		t.Fatalf("parts: %v", parts)
	}
	if in := parts[0].(map[string]any)["input"]; in != `{"query":` {
		t.Fatalf("malformed arguments are kept as a JSON string: %v", in)
	}
	for i := 1; i < 8; i += 2 {
		if out := parts[i].(map[string]any)["output"].(map[string]any); out["error"] == nil {
			t.Fatalf("tool result %d: %v", i, out)
		}
	}
	reqs := llm.Requests()
	if len(reqs) != 5 {
		t.Fatalf("%d model requests, want 5", len(reqs))
	}
	for i, r := range reqs {
		if tools := len(r.ToolNames()); (i < 4) != (tools == 1) {
			t.Fatalf("request %d offered %d tools", i, tools)
		}
	}
}
