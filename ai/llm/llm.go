// Package llm is a client of OpenAI-compatible chat-completions endpoints (OpenAI, Ollama, vLLM,
// llama.cpp and others speak the same protocol): streamed replies over Server-Sent Events, tool
// calls, timeouts for the whole request and for a stalled stream, and retries before the first chunk.
package llm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config configures a Client.
type Config struct {
	// URL is the provider's base URL. The client posts to URL/v1/chat/completions, or to
	// URL/chat/completions when URL already ends in /v1.
	URL    string
	Model  string
	APIKey string // sent as a bearer token when set
	// RequestTimeout bounds a whole request, stream included (default 5 minutes).
	RequestTimeout time.Duration
	// IdleTimeout is the longest gap between two chunks of a stream, or between the request and its
	// first chunk, before the stream counts as stalled (default 30 s).
	IdleTimeout time.Duration
	// MaxRetries is how many times a request is retried after a connection error, 429 or 5xx that
	// happened before any chunk arrived (default 2; negative: none).
	MaxRetries int
	// HTTPClient sends the requests (default: a client without its own timeout).
	HTTPClient *http.Client
}

// Message is one message of the conversation sent to the model.
type Message struct {
	Role       string // system, user, assistant or tool
	Content    string
	ToolCalls  []ToolCall // the model's calls, on an assistant message
	ToolCallID string     // the call a tool message answers
}

// ToolCall is a function call the model asked for.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string // the JSON text the model produced (it may be malformed: validate it)
}

// Tool is a function the model may call; Parameters is its JSON Schema.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
}

// Request is one chat completion.
type Request struct {
	Messages  []Message
	Tools     []Tool
	MaxTokens int // 0: the provider's default
}

// Delta is a piece of the reply as it streams.
type Delta struct {
	Text      string
	Reasoning string
}

// Result is a complete reply.
type Result struct {
	Text         string
	Reasoning    string
	ToolCalls    []ToolCall
	FinishReason string
}

// ErrStalled is returned when no chunk arrived within the idle timeout.
var ErrStalled = errors.New("the model's stream stalled")

// ProviderError is an error the provider reported: a non-2xx answer, or an error object in the stream.
type ProviderError struct {
	Status  int // HTTP status; 0 for an error reported mid-stream
	Code    string
	Message string
}

func (e *ProviderError) Error() string {
	var b strings.Builder
	b.WriteString("model provider")
	if e.Status != 0 {
		fmt.Fprintf(&b, " answered %d", e.Status)
	} else {
		b.WriteString(" failed mid-stream")
	}
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// retryable reports whether a request that failed this way may be sent again.
func (e *ProviderError) retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Client talks to one model of one provider. It is safe for concurrent use.
type Client struct {
	cfg      Config
	endpoint string
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("model URL %q: want an http or https URL", cfg.URL)
	}
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, errors.New("model name is empty")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Minute
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 2
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	endpoint := u.String()
	if strings.HasSuffix(u.Path, "/v1") {
		endpoint += "/chat/completions"
	} else {
		endpoint += "/v1/chat/completions"
	}
	return &Client{cfg: cfg, endpoint: endpoint}, nil
}

// Model is the model's name.
func (c *Client) Model() string { return c.cfg.Model }

// Complete returns the whole reply.
func (c *Client) Complete(ctx context.Context, req Request) (Result, error) {
	return c.Stream(ctx, req, nil)
}

// Stream asks for a streamed reply, calls onDelta (when not nil) with each piece of text or reasoning
// as it arrives, and returns the whole reply. An error from onDelta ends the stream with that error.
// Requests that fail before the first chunk with a connection error, 429 or 5xx are retried with
// backoff (honouring Retry-After); once a chunk has been delivered nothing is retried, so onDelta
// never sees a piece twice.
func (c *Client) Stream(ctx context.Context, req Request, onDelta func(Delta) error) (Result, error) {
	body, err := json.Marshal(c.wireRequest(req))
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		res, delivered, wait, err := c.once(ctx, body, onDelta)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil && !errors.Is(err, ErrStalled) {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return res, fmt.Errorf("model request timed out after %s: %w", c.cfg.RequestTimeout, ctx.Err())
			}
			return res, ctx.Err()
		}
		if delivered || wait < 0 || attempt >= c.cfg.MaxRetries {
			return res, err
		}
		if wait == 0 {
			wait = backoff(attempt)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, ctx.Err()
		case <-t.C:
		}
	}
}

// backoff is the wait before retry attempt+1: exponential from 500 ms with jitter.
func backoff(attempt int) time.Duration {
	d := 500 * time.Millisecond << attempt
	return d/2 + rand.N(d/2+1)
}

// once sends one request. delivered says whether any chunk reached onDelta; wait is how long to wait
// before a retry (0: the default backoff; negative: do not retry).
func (c *Client) once(ctx context.Context, body []byte, onDelta func(Delta) error) (res Result, delivered bool, wait time.Duration, err error) {
	// The idle timer cancels the request when nothing arrives for IdleTimeout.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(c.cfg.IdleTimeout, func() { cancel(ErrStalled) })
	defer idle.Stop()

	hreq, err := http.NewRequestWithContext(rctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return res, false, -1, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "text/event-stream")
	if c.cfg.APIKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.cfg.HTTPClient.Do(hreq)
	if err != nil {
		if errors.Is(context.Cause(rctx), ErrStalled) {
			return res, false, 0, fmt.Errorf("%w: no answer within %s", ErrStalled, c.cfg.IdleTimeout)
		}
		return res, false, 0, fmt.Errorf("model request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		perr := readError(resp)
		if !perr.retryable() {
			return res, false, -1, perr
		}
		return res, false, retryAfter(resp.Header.Get("Retry-After")), perr
	}

	acc := newAccumulator()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	var data strings.Builder
	for sc.Scan() {
		idle.Reset(c.cfg.IdleTimeout)
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			payload := data.String()
			data.Reset()
			if strings.TrimSpace(payload) == "[DONE]" {
				return acc.result(), delivered, -1, nil
			}
			d, err := acc.add([]byte(payload))
			if err != nil {
				return acc.result(), delivered, -1, err
			}
			if (d.Text != "" || d.Reasoning != "") && onDelta != nil {
				delivered = true
				if err := onDelta(d); err != nil {
					return acc.result(), true, -1, err
				}
			}
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
		// Other fields (event:, id:, retry:) and comments (":") carry nothing for chat completions.
	}
	err = sc.Err()
	if errors.Is(context.Cause(rctx), ErrStalled) {
		return acc.result(), delivered, 0, fmt.Errorf("%w: nothing for %s", ErrStalled, c.cfg.IdleTimeout)
	}
	if err != nil {
		return acc.result(), delivered, 0, fmt.Errorf("read the model's stream: %w", err)
	}
	if data.Len() > 0 && strings.TrimSpace(data.String()) != "[DONE]" {
		if _, err := acc.add([]byte(data.String())); err != nil {
			return acc.result(), delivered, -1, err
		}
	}
	if acc.finish == "" {
		// The connection closed without [DONE] and without a finish reason: the reply is cut short.
		return acc.result(), delivered, 0, errors.New("the model's stream ended early")
	}
	return acc.result(), delivered, -1, nil
}

// retryAfter reads a Retry-After header in seconds (dates are rare from these providers), capped.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, time.Minute)
}

// readError turns a non-2xx answer into a ProviderError with the provider's message when it sent one.
func readError(resp *http.Response) *ProviderError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	perr := &ProviderError{Status: resp.StatusCode}
	var body struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil && len(body.Error) > 0 {
		perr.Code, perr.Message = decodeErrorObject(body.Error)
	}
	if perr.Message == "" {
		perr.Message = strings.TrimSpace(string(b))
		if len(perr.Message) > 300 {
			perr.Message = perr.Message[:300] + "…"
		}
	}
	return perr
}

// decodeErrorObject reads OpenAI's {"message", "type", "code"} error object, or a bare string.
func decodeErrorObject(raw json.RawMessage) (code, message string) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return "", s
	}
	var o struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	_ = json.Unmarshal(raw, &o)
	code = o.Type
	if len(o.Code) > 0 && string(o.Code) != "null" {
		var cs string
		if json.Unmarshal(o.Code, &cs) == nil {
			code = cs
		} else {
			code = string(o.Code)
		}
	}
	return code, o.Message
}

// The wire format of a chat-completions request.
type wireRequest struct {
	Model         string        `json:"model"`
	Messages      []wireMessage `json:"messages"`
	Tools         []wireTool    `json:"tools,omitempty"`
	Stream        bool          `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options,omitempty"`
	MaxTokens int `json:"max_tokens,omitempty"`
}

type wireMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content"`
	ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type wireToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type wireTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	} `json:"function"`
}

func (c *Client) wireRequest(req Request) wireRequest {
	w := wireRequest{Model: c.cfg.Model, Stream: true, MaxTokens: req.MaxTokens}
	for _, m := range req.Messages {
		content := m.Content
		wm := wireMessage{Role: m.Role, Content: &content, ToolCallID: m.ToolCallID}
		if m.Role == "assistant" && len(m.ToolCalls) > 0 && m.Content == "" {
			wm.Content = nil // an assistant turn that only calls tools has null content
		}
		for _, tc := range m.ToolCalls {
			var wtc wireToolCall
			wtc.ID, wtc.Type = tc.ID, "function"
			wtc.Function.Name, wtc.Function.Arguments = tc.Name, tc.Arguments
			wm.ToolCalls = append(wm.ToolCalls, wtc)
		}
		w.Messages = append(w.Messages, wm)
	}
	for _, t := range req.Tools {
		var wt wireTool
		wt.Type = "function"
		wt.Function.Name, wt.Function.Description, wt.Function.Parameters = t.Name, t.Description, t.Parameters
		w.Tools = append(w.Tools, wt)
	}
	return w
}

// accumulator assembles a streamed reply from its chunks.
type accumulator struct {
	text, reasoning strings.Builder
	calls           map[int]*ToolCall
	finish          string
}

func newAccumulator() *accumulator { return &accumulator{calls: map[int]*ToolCall{}} }

// wireChunk is one chunk of a stream (the fields Atlas reads).
type wireChunk struct {
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content          *string        `json:"content"`
			ReasoningContent *string        `json:"reasoning_content"`
			Reasoning        *string        `json:"reasoning"`
			ToolCalls        []wireToolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Error json.RawMessage `json:"error"`
}

// add folds one chunk in and returns the text and reasoning it added.
func (a *accumulator) add(payload []byte) (Delta, error) {
	var ch wireChunk
	if err := json.Unmarshal(payload, &ch); err != nil {
		return Delta{}, fmt.Errorf("the model's stream sent a malformed chunk: %w", err)
	}
	if len(ch.Error) > 0 && string(ch.Error) != "null" {
		code, msg := decodeErrorObject(ch.Error)
		return Delta{}, &ProviderError{Code: code, Message: msg}
	}
	var d Delta
	for _, choice := range ch.Choices {
		if choice.Index != 0 {
			continue // Atlas asks for one choice
		}
		if choice.Delta.Content != nil {
			d.Text += *choice.Delta.Content
		}
		if choice.Delta.ReasoningContent != nil {
			d.Reasoning += *choice.Delta.ReasoningContent
		} else if choice.Delta.Reasoning != nil {
			d.Reasoning += *choice.Delta.Reasoning
		}
		for i, tc := range choice.Delta.ToolCalls {
			idx := i
			if tc.Index != nil {
				idx = *tc.Index
			}
			call := a.calls[idx]
			if call == nil {
				call = &ToolCall{}
				a.calls[idx] = call
			}
			if tc.ID != "" {
				call.ID = tc.ID
			}
			if tc.Function.Name != "" {
				call.Name += tc.Function.Name
			}
			call.Arguments += tc.Function.Arguments
		}
		if choice.FinishReason != nil && *choice.FinishReason != "" {
			a.finish = *choice.FinishReason
		}
	}
	a.text.WriteString(d.Text)
	a.reasoning.WriteString(d.Reasoning)
	return d, nil
}

func (a *accumulator) result() Result {
	r := Result{Text: a.text.String(), Reasoning: a.reasoning.String(), FinishReason: a.finish}
	idx := make([]int, 0, len(a.calls))
	for i := range a.calls {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		r.ToolCalls = append(r.ToolCalls, *a.calls[i])
	}
	return r
}
