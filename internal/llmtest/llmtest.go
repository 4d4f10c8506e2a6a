// Package llmtest is a local OpenAI-compatible chat-completions server for tests: it speaks the real
// streaming protocol (SSE `data:` chunks ending in `data: [DONE]`), with scripted replies for text,
// reasoning, tool calls, errors before and during the stream, and stalls.
package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ToolCall is a tool call the fake model makes.
type ToolCall struct {
	ID, Name, Arguments string
}

// Reply scripts one answer of the fake model.
type Reply struct {
	Deltas     []string   // text chunks, one SSE event each, then finish_reason "stop" and [DONE]
	Reasoning  []string   // reasoning chunks (delta.reasoning_content), sent before the text
	ToolCalls  []ToolCall // streamed as tool_calls deltas (arguments in pieces); finish_reason "tool_calls"
	FailAfter  int        // > 0: after this many text chunks, an error event ends the stream
	StallAfter int        // > 0: after this many text chunks, nothing more until the client goes away
	Status     int        // non-zero: answer this status with an OpenAI-style error body
	DeltaDelay time.Duration
}

// Message is a message of a received request.
type Message struct {
	Role       string `json:"role"`
	Content    string `json:"content"`
	ToolCallID string `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// Request is a received request body.
type Request struct {
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`
	Tools    []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	Stream bool `json:"stream"`
	// Auth is the Authorization header.
	Auth string `json:"-"`
}

// ToolNames are the names of the tools the request offered.
func (r Request) ToolNames() []string {
	var out []string
	for _, t := range r.Tools {
		out = append(out, t.Function.Name)
	}
	return out
}

// Server is the fake provider. Its URL is the base URL a client is configured with.
type Server struct {
	URL string

	mu       sync.Mutex
	replies  []Reply
	requests []Request
	arrived  chan struct{} // closed and replaced at each request
}

// Start runs a server until the test ends.
func Start(t testing.TB) *Server {
	s := &Server{arrived: make(chan struct{})}
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	s.URL = ts.URL
	return s
}

// Push queues replies; each request takes the next one. With none queued the server echoes the last
// user message, word by word.
func (s *Server) Push(r ...Reply) {
	s.mu.Lock()
	s.replies = append(s.replies, r...)
	s.mu.Unlock()
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Wait waits until n requests have arrived, for at most d.
func (s *Server) Wait(n int, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch := len(s.requests), s.arrived
		s.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		writeError(w, http.StatusNotFound, "invalid_request_error", "unknown path "+r.URL.Path)
		return
	}
	var req Request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "malformed JSON: "+err.Error())
		return
	}
	req.Auth = r.Header.Get("Authorization")
	s.mu.Lock()
	s.requests = append(s.requests, req)
	close(s.arrived)
	s.arrived = make(chan struct{})
	var reply Reply
	if len(s.replies) > 0 {
		reply, s.replies = s.replies[0], s.replies[1:]
	} else {
		reply = echoReply(req)
	}
	s.mu.Unlock()

	if reply.Status != 0 {
		writeError(w, reply.Status, "server_error", fmt.Sprintf("scripted failure %d", reply.Status))
		return
	}
	if !req.Stream {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "this fake server only streams")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	id := fmt.Sprintf("chatcmpl-%d", time.Now().UnixNano())
	send := func(v any) bool {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return r.Context().Err() == nil
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	pause := func() bool {
		if reply.DeltaDelay <= 0 {
			return true
		}
		select {
		case <-r.Context().Done():
			return false
		case <-time.After(reply.DeltaDelay):
			return true
		}
	}
	if !send(chunk(map[string]any{"role": "assistant", "content": ""}, nil)) {
		return
	}
	for _, rs := range reply.Reasoning {
		if !pause() || !send(chunk(map[string]any{"reasoning_content": rs}, nil)) {
			return
		}
	}
	for i, d := range reply.Deltas {
		if reply.FailAfter > 0 && i == reply.FailAfter {
			send(map[string]any{"error": map[string]any{"message": "scripted failure mid-stream", "type": "server_error", "code": "upstream_failed"}})
			return
		}
		if reply.StallAfter > 0 && i == reply.StallAfter {
			<-r.Context().Done()
			return
		}
		if !pause() || !send(chunk(map[string]any{"content": d}, nil)) {
			return
		}
	}
	if reply.FailAfter > 0 && reply.FailAfter >= len(reply.Deltas) {
		send(map[string]any{"error": map[string]any{"message": "scripted failure mid-stream", "type": "server_error", "code": "upstream_failed"}})
		return
	}
	if reply.StallAfter > 0 && reply.StallAfter >= len(reply.Deltas) {
		<-r.Context().Done()
		return
	}
	finish := "stop"
	for i, tc := range reply.ToolCalls {
		finish = "tool_calls"
		// The name and id first, then the arguments in two pieces, as providers stream them.
		half := len(tc.Arguments) / 2
		parts := []map[string]any{
			{"index": i, "id": tc.ID, "type": "function", "function": map[string]any{"name": tc.Name, "arguments": ""}},
			{"index": i, "function": map[string]any{"arguments": tc.Arguments[:half]}},
			{"index": i, "function": map[string]any{"arguments": tc.Arguments[half:]}},
		}
		for _, p := range parts {
			if !pause() || !send(chunk(map[string]any{"tool_calls": []any{p}}, nil)) {
				return
			}
		}
	}
	if !send(chunk(map[string]any{}, finish)) {
		return
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if fl != nil {
		fl.Flush()
	}
}

// echoReply answers "echo: <last user message>" in word-sized chunks.
func echoReply(req Request) Reply {
	last := ""
	for _, m := range req.Messages {
		if m.Role == "user" {
			last = m.Content
		}
	}
	words := strings.Fields("echo: " + last)
	out := make([]string, len(words))
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		out[i] = w
	}
	return Reply{Deltas: out}
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": nil}})
}
