package embed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeProvider speaks the OpenAI embeddings protocol. The embedding of input "t<k>" is
// [k, k+0.5, -k, ...] padded to dims values; data entries are returned in reverse index order.
type fakeProvider struct {
	mu   sync.Mutex
	dims int
	// fail, when set, may answer a request itself (returning true); n counts requests from 1.
	fail     func(n int, w http.ResponseWriter, r *http.Request) bool
	requests []recorded
}

type recorded struct {
	path, auth, contentType string
	body                    map[string]any
	input                   []string
}

func (p *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Input []string `json:"input"`
	}
	raw := map[string]any{}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&raw); err != nil {
		http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
		return
	}
	b, _ := json.Marshal(raw)
	_ = json.Unmarshal(b, &req)

	p.mu.Lock()
	p.requests = append(p.requests, recorded{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), raw, req.Input})
	n, dims, fail := len(p.requests), p.dims, p.fail
	p.mu.Unlock()
	if fail != nil && fail(n, w, r) {
		return
	}

	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	var data []item
	for i := len(req.Input) - 1; i >= 0; i-- {
		k, _ := strconv.Atoi(strings.TrimPrefix(req.Input[i], "t"))
		v := make([]float32, dims)
		for j := range v {
			switch j % 3 {
			case 0:
				v[j] = float32(k)
			case 1:
				v[j] = float32(k) + 0.5
			default:
				v[j] = -float32(k)
			}
		}
		data = append(data, item{"embedding", i, v})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"object": "list", "data": data, "model": raw["model"],
		"usage": map[string]int{"prompt_tokens": len(req.Input), "total_tokens": len(req.Input)},
	})
}

func (p *fakeProvider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.requests)
}

func newFake(t *testing.T, dims int, fail func(int, http.ResponseWriter, *http.Request) bool) (*fakeProvider, *httptest.Server) {
	p := &fakeProvider{dims: dims, fail: fail}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

func newClient(t *testing.T, cfg OpenAIConfig) *OpenAI {
	t.Helper()
	if cfg.Model == "" {
		cfg.Model = "text-embedding-3-small"
	}
	o, err := NewOpenAI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.backoff = time.Millisecond
	return o
}

func inputs(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "t" + strconv.Itoa(i)
	}
	return s
}

func TestOpenAIBatchingOrderAndProtocol(t *testing.T) {
	p, srv := newFake(t, 3, nil)
	o := newClient(t, OpenAIConfig{URL: srv.URL, APIKey: "sk-test"})
	if o.Name() != "openai:text-embedding-3-small:0" || o.Dimensions() != 0 {
		t.Fatalf("before first call: %q %d", o.Name(), o.Dimensions())
	}
	vecs, err := o.Embed(context.Background(), inputs(150))
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != 150 {
		t.Fatalf("%d vectors", len(vecs))
	}
	for i, v := range vecs {
		if len(v) != 3 || v[0] != float32(i) || v[1] != float32(i)+0.5 || v[2] != -float32(i) {
			t.Fatalf("vector %d = %v: not reordered by index", i, v)
		}
	}
	var sizes []int
	for _, r := range p.requests {
		sizes = append(sizes, len(r.input))
		if r.path != "/v1/embeddings" {
			t.Errorf("path %q", r.path)
		}
		if r.auth != "Bearer sk-test" {
			t.Errorf("Authorization %q", r.auth)
		}
		if r.contentType != "application/json" {
			t.Errorf("Content-Type %q", r.contentType)
		}
		if r.body["model"] != "text-embedding-3-small" || r.body["encoding_format"] != "float" {
			t.Errorf("body %v", r.body)
		}
		if _, ok := r.body["dimensions"]; ok {
			t.Errorf("dimensions sent although not configured: %v", r.body["dimensions"])
		}
	}
	if fmt.Sprint(sizes) != "[64 64 22]" {
		t.Fatalf("batch sizes %v, want [64 64 22]", sizes)
	}
	if o.Dimensions() != 3 || o.Name() != "openai:text-embedding-3-small:3" {
		t.Fatalf("after first call: %q %d", o.Name(), o.Dimensions())
	}

	// Custom batch size; no API key means no Authorization header; no input means no request.
	p2, srv2 := newFake(t, 3, nil)
	o2 := newClient(t, OpenAIConfig{URL: srv2.URL, BatchSize: 10})
	if _, err := o2.Embed(context.Background(), inputs(25)); err != nil {
		t.Fatal(err)
	}
	if vecs, err := o2.Embed(context.Background(), nil); err != nil || len(vecs) != 0 {
		t.Fatalf("empty input: %v %v", vecs, err)
	}
	if p2.count() != 3 || p2.requests[0].auth != "" {
		t.Fatalf("%d requests, auth %q", p2.count(), p2.requests[0].auth)
	}
}

func TestOpenAIEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.openai.com":                           "https://api.openai.com/v1/embeddings",
		"https://api.openai.com/":                          "https://api.openai.com/v1/embeddings",
		"https://api.openai.com/v1":                        "https://api.openai.com/v1/embeddings",
		"http://localhost:11434/v1/":                       "http://localhost:11434/v1/embeddings",
		"http://proxy/openai":                              "http://proxy/openai/v1/embeddings",
		"http://tei:8080/embeddings":                       "http://tei:8080/embeddings",
		"https://x/deployments/e/embeddings?api-version=1": "https://x/deployments/e/embeddings?api-version=1",
	} {
		o, err := NewOpenAI(OpenAIConfig{URL: in, Model: "m"})
		if err != nil {
			t.Fatal(err)
		}
		if o.Endpoint() != want {
			t.Errorf("URL %q: endpoint %q, want %q", in, o.Endpoint(), want)
		}
	}
}

func TestNewOpenAIValidates(t *testing.T) {
	for _, cfg := range []OpenAIConfig{
		{URL: "http://x"},
		{Model: "m"},
		{URL: "ftp://x", Model: "m"},
		{URL: "localhost:8080", Model: "m"},
		{URL: "http://x", Model: "m", Dimensions: -1},
		{URL: "http://x", Model: "m", BatchSize: -1},
	} {
		if _, err := NewOpenAI(cfg); err == nil {
			t.Errorf("NewOpenAI(%+v): no error", cfg)
		}
	}
	o, err := NewOpenAI(OpenAIConfig{URL: "http://x", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if o.batchSize != 64 || o.timeout != 30*time.Second || o.maxRetries != 3 || o.client == nil {
		t.Fatalf("defaults: %d %v %d", o.batchSize, o.timeout, o.maxRetries)
	}
}

func TestOpenAI429RetryAfterThenSuccess(t *testing.T) {
	p, srv := newFake(t, 3, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`))
			return true
		}
		return false
	})
	o := newClient(t, OpenAIConfig{URL: srv.URL})
	start := time.Now()
	vecs, err := o.Embed(context.Background(), inputs(2))
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
		t.Fatalf("retried after %v; Retry-After: 1 not honoured", elapsed)
	}
	if p.count() != 2 || len(vecs) != 2 || vecs[1][0] != 1 {
		t.Fatalf("%d requests, %v", p.count(), vecs)
	}
}

func TestOpenAI5xxThenSuccess(t *testing.T) {
	p, srv := newFake(t, 3, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		switch n {
		case 1:
			http.Error(w, "internal error", http.StatusInternalServerError)
			return true
		case 2:
			http.Error(w, `{"error":{"message":"overloaded"}}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	o := newClient(t, OpenAIConfig{URL: srv.URL})
	if _, err := o.Embed(context.Background(), inputs(5)); err != nil {
		t.Fatal(err)
	}
	if p.count() != 3 {
		t.Fatalf("%d requests, want 3", p.count())
	}
}

func TestOpenAIRetriesExhausted(t *testing.T) {
	p, srv := newFake(t, 3, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return true
	})
	o := newClient(t, OpenAIConfig{URL: srv.URL, MaxRetries: 2})
	_, err := o.Embed(context.Background(), inputs(1))
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if p.count() != 3 {
		t.Fatalf("%d requests, want 3", p.count())
	}

	// Negative MaxRetries: no retry.
	p2, srv2 := newFake(t, 3, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return true
	})
	if _, err := newClient(t, OpenAIConfig{URL: srv2.URL, MaxRetries: -1}).Embed(context.Background(), inputs(1)); err == nil || p2.count() != 1 {
		t.Fatalf("MaxRetries -1: %v, %d requests", err, p2.count())
	}
}

func TestOpenAI400NotRetried(t *testing.T) {
	p, srv := newFake(t, 3, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":null}}`))
		return true
	})
	o := newClient(t, OpenAIConfig{URL: srv.URL})
	_, err := o.Embed(context.Background(), inputs(3))
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want an *APIError", err)
	}
	if apiErr.StatusCode != 400 || apiErr.Type != "invalid_request_error" || !strings.Contains(apiErr.Message, "maximum context length") {
		t.Fatalf("APIError %+v", apiErr)
	}
	if msg := err.Error(); !strings.Contains(msg, "HTTP 400") || !strings.Contains(msg, "maximum context length") || !strings.Contains(msg, "text-embedding-3-small") {
		t.Fatalf("error message %q", msg)
	}
	if p.count() != 1 {
		t.Fatalf("%d requests; a 400 must not be retried", p.count())
	}
	// Nor a 401.
	p2, srv2 := newFake(t, 3, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, `{"error":"invalid api key"}`, http.StatusUnauthorized)
		return true
	})
	_, err = newClient(t, OpenAIConfig{URL: srv2.URL}).Embed(context.Background(), inputs(1))
	if err == nil || !strings.Contains(err.Error(), "invalid api key") || p2.count() != 1 {
		t.Fatalf("401: %v, %d requests", err, p2.count())
	}
}

func TestOpenAITimeout(t *testing.T) {
	p, srv := newFake(t, 3, func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return true
	})
	// Attempts are counted where they leave the client: under load a timed-out attempt may never
	// reach the server's handler.
	var attempts atomic.Int32
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	o := newClient(t, OpenAIConfig{URL: srv.URL, Timeout: 50 * time.Millisecond, MaxRetries: 1, HTTPClient: client})
	_ = p
	start := time.Now()
	_, err := o.Embed(context.Background(), inputs(1))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Fatalf("err = %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("took %v", elapsed)
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("%d attempts; a timeout is retried once with MaxRetries 1", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestOpenAICallerCancellationNotRetried(t *testing.T) {
	p, srv := newFake(t, 3, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	})
	o := newClient(t, OpenAIConfig{URL: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := o.Embed(ctx, inputs(1))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	if p.count() != 1 {
		t.Fatalf("%d requests", p.count())
	}
}

func TestOpenAINetworkErrorRetried(t *testing.T) {
	p, srv := newFake(t, 3, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return true
		}
		return false
	})
	o := newClient(t, OpenAIConfig{URL: srv.URL})
	if _, err := o.Embed(context.Background(), inputs(4)); err != nil {
		t.Fatal(err)
	}
	if p.count() < 2 {
		t.Fatalf("%d requests", p.count())
	}
}

func TestOpenAIDimensionMismatch(t *testing.T) {
	// Learned from the first response, then fixed.
	p, srv := newFake(t, 3, nil)
	o := newClient(t, OpenAIConfig{URL: srv.URL})
	if _, err := o.Embed(context.Background(), inputs(2)); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.dims = 4
	p.mu.Unlock()
	_, err := o.Embed(context.Background(), inputs(2))
	if err == nil || !strings.Contains(err.Error(), "dimension mismatch") || !strings.Contains(err.Error(), "got 4") {
		t.Fatalf("err = %v", err)
	}
	if o.Dimensions() != 3 {
		t.Fatalf("Dimensions() = %d after mismatch", o.Dimensions())
	}

	// Configured: sent as "dimensions" and enforced.
	p2, srv2 := newFake(t, 4, nil)
	o2 := newClient(t, OpenAIConfig{URL: srv2.URL, Dimensions: 8})
	if o2.Dimensions() != 8 || o2.Name() != "openai:text-embedding-3-small:8" {
		t.Fatalf("%d %q", o2.Dimensions(), o2.Name())
	}
	if _, err := o2.Embed(context.Background(), inputs(1)); err == nil || !strings.Contains(err.Error(), "want 8") {
		t.Fatalf("err = %v", err)
	}
	if d, _ := p2.requests[0].body["dimensions"].(float64); d != 8 {
		t.Fatalf("dimensions sent: %v", p2.requests[0].body["dimensions"])
	}
	if p2.count() != 1 {
		t.Fatalf("a bad response was retried: %d requests", p2.count())
	}
}

func TestOpenAIBadResponses(t *testing.T) {
	for name, body := range map[string]string{
		"count":     `{"data":[{"index":0,"embedding":[1,2]}]}`,
		"range":     `{"data":[{"index":0,"embedding":[1,2]},{"index":2,"embedding":[1,2]}]}`,
		"duplicate": `{"data":[{"index":0,"embedding":[1,2]},{"index":0,"embedding":[1,2]}]}`,
		"empty":     `{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[1,2]}]}`,
		"ragged":    `{"data":[{"index":0,"embedding":[1,2,3]},{"index":1,"embedding":[1,2]}]}`,
		"json":      `{"data":[`,
	} {
		p, srv := newFake(t, 3, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
			_, _ = w.Write([]byte(body))
			return true
		})
		_, err := newClient(t, OpenAIConfig{URL: srv.URL}).Embed(context.Background(), inputs(2))
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if p.count() != 1 {
			t.Errorf("%s: %d requests", name, p.count())
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"0":                             0,
		"-4":                            0,
		"junk":                          0,
		"NaN":                           0,
		"100000":                        maxRetryAfter,
		"Wed, 01 Jan 2025 12:00:10 GMT": 10 * time.Second,
		"Wed, 01 Jan 2025 11:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseAPIError(t *testing.T) {
	for body, want := range map[string]string{
		`{"error":{"message":"bad model","type":"invalid_request_error","code":"model_not_found"}}`: "HTTP 404 Not Found: bad model (code model_not_found)",
		`{"error":"model \"x\" not found, try pulling it first"}`:                                   `HTTP 404 Not Found: model "x" not found, try pulling it first`,
		`{"message":"no such model"}`:                                                               "HTTP 404 Not Found: no such model",
		`{"detail":"Not Found"}`:                                                                    "HTTP 404 Not Found: Not Found",
		"<html>nginx</html>":                                                                        "HTTP 404 Not Found: <html>nginx</html>",
		"":                                                                                          "HTTP 404 Not Found",
	} {
		if got := parseAPIError(404, []byte(body)).Error(); got != want {
			t.Errorf("body %s: %q, want %q", body, got, want)
		}
	}
}
