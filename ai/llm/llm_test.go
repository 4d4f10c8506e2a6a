package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/ai/llm"
	"github.com/atlas-workspace/atlas/internal/llmtest"
)

func newClient(t *testing.T, srv *llmtest.Server, mod func(*llm.Config)) *llm.Client {
	t.Helper()
	cfg := llm.Config{URL: srv.URL, Model: "test-model", APIKey: "sk-test", IdleTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStreamDeliversDeltasInOrder(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{Reasoning: []string{"think ", "hard"}, Deltas: []string{"Hel", "lo ", "world"}})
	c := newClient(t, srv, nil)
	var text, reasoning []string
	res, err := c.Stream(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "hi"}}},
		func(d llm.Delta) error {
			if d.Text != "" {
				text = append(text, d.Text)
			}
			if d.Reasoning != "" {
				reasoning = append(reasoning, d.Reasoning)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(text, "|"); got != "Hel|lo |world" {
		t.Errorf("deltas %q", got)
	}
	if res.Text != "Hello world" || res.Reasoning != "think hard" || res.FinishReason != "stop" {
		t.Errorf("result %+v", res)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Model != "test-model" || !reqs[0].Stream || reqs[0].Auth != "Bearer sk-test" ||
		reqs[0].Messages[0].Content != "hi" {
		t.Errorf("request %+v", reqs)
	}
}

func TestToolCallsAreAssembledFromPieces(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{ToolCalls: []llmtest.ToolCall{
		{ID: "call_1", Name: "search", Arguments: `{"query":"quarterly report"}`},
		{ID: "call_2", Name: "search", Arguments: `{"query":"budget"}`},
	}})
	c := newClient(t, srv, nil)
	params := json.RawMessage(`{"type":"object","properties":{"query":{"type":"string"}}}`)
	res, err := c.Complete(context.Background(), llm.Request{
		Messages: []llm.Message{{Role: "user", Content: "find it"}},
		Tools:    []llm.Tool{{Name: "search", Description: "search the space", Parameters: params}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.FinishReason != "tool_calls" || len(res.ToolCalls) != 2 ||
		res.ToolCalls[0] != (llm.ToolCall{ID: "call_1", Name: "search", Arguments: `{"query":"quarterly report"}`}) ||
		res.ToolCalls[1].Arguments != `{"query":"budget"}` {
		t.Fatalf("result %+v", res)
	}
	if names := srv.Requests()[0].ToolNames(); len(names) != 1 || names[0] != "search" {
		t.Errorf("tools offered %v", names)
	}

	// The tool round trip: the assistant's call and the tool's answer go back to the model.
	_, err = c.Complete(context.Background(), llm.Request{Messages: []llm.Message{
		{Role: "user", Content: "find it"},
		{Role: "assistant", ToolCalls: res.ToolCalls},
		{Role: "tool", ToolCallID: "call_1", Content: "found: report.pdf"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := srv.Requests()[1].Messages
	if len(m) != 3 || len(m[1].ToolCalls) != 2 || m[1].ToolCalls[0].Function.Name != "search" || m[2].ToolCallID != "call_1" {
		t.Errorf("tool round trip sent %+v", m)
	}
}

func TestRetriesServerErrorsBeforeTheFirstChunk(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{Status: 503}, llmtest.Reply{Status: 429}, llmtest.Reply{Deltas: []string{"ok"}})
	c := newClient(t, srv, nil)
	res, err := c.Complete(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "x"}}})
	if err != nil || res.Text != "ok" {
		t.Fatalf("res %+v err %v", res, err)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{Status: 401})
	c := newClient(t, srv, nil)
	_, err := c.Complete(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "x"}}})
	var perr *llm.ProviderError
	if !errors.As(err, &perr) || perr.Status != 401 || !strings.Contains(perr.Message, "scripted failure") {
		t.Fatalf("err %v", err)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestErrorMidStreamIsNotRetried(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{Deltas: []string{"a", "b", "c"}, FailAfter: 2})
	c := newClient(t, srv, nil)
	var got string
	res, err := c.Stream(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "x"}}},
		func(d llm.Delta) error { got += d.Text; return nil })
	var perr *llm.ProviderError
	if !errors.As(err, &perr) || perr.Status != 0 || perr.Code != "upstream_failed" {
		t.Fatalf("err %v", err)
	}
	if got != "ab" || res.Text != "ab" {
		t.Errorf("delivered %q, result %q", got, res.Text)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestStalledStream(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{Deltas: []string{"a", "b"}, StallAfter: 1})
	c := newClient(t, srv, func(cfg *llm.Config) { cfg.IdleTimeout = 300 * time.Millisecond })
	start := time.Now()
	res, err := c.Stream(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "x"}}},
		func(llm.Delta) error { return nil })
	if !errors.Is(err, llm.ErrStalled) {
		t.Fatalf("err %v, want ErrStalled", err)
	}
	if res.Text != "a" {
		t.Errorf("partial text %q", res.Text)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stall noticed after %s", d)
	}
}

func TestWholeRequestTimeout(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{Deltas: []string{"a", "b", "c", "d", "e"}, DeltaDelay: 200 * time.Millisecond})
	c := newClient(t, srv, func(cfg *llm.Config) { cfg.RequestTimeout = 500 * time.Millisecond })
	_, err := c.Stream(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "x"}}},
		func(llm.Delta) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err %v, want a timeout", err)
	}
}

func TestCallerCancellation(t *testing.T) {
	srv := llmtest.Start(t)
	srv.Push(llmtest.Reply{Deltas: []string{"a", "b", "c"}, DeltaDelay: 50 * time.Millisecond})
	c := newClient(t, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := c.Stream(ctx, llm.Request{Messages: []llm.Message{{Role: "user", Content: "x"}}},
		func(d llm.Delta) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests after cancel, want 1", n)
	}
}

func TestEchoByDefaultAndV1BaseURL(t *testing.T) {
	srv := llmtest.Start(t)
	c := newClient(t, srv, func(cfg *llm.Config) { cfg.URL = srv.URL + "/v1/" })
	res, err := c.Complete(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "hello there"}}})
	if err != nil || res.Text != "echo: hello there" {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func TestConfigIsChecked(t *testing.T) {
	for _, cfg := range []llm.Config{{URL: "", Model: "m"}, {URL: "ftp://x", Model: "m"}, {URL: "http://x", Model: " "}} {
		if _, err := llm.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
