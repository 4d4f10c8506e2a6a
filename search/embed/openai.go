package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults for OpenAIConfig.
const (
	DefaultOpenAIBatchSize  = 64
	DefaultOpenAITimeout    = 30 * time.Second
	DefaultOpenAIMaxRetries = 3
)

const (
	maxResponseBytes = 256 << 20       // an embeddings response larger than this is refused
	maxRetryAfter    = 2 * time.Minute // a longer Retry-After is cut to this
	maxErrorBody     = 512             // bytes of a non-JSON error body quoted in an error
	defaultBackoff   = 500 * time.Millisecond
	maxBackoff       = 30 * time.Second
)

// OpenAIConfig configures an OpenAI client.
type OpenAIConfig struct {
	// URL is the provider's base URL, e.g. "https://api.openai.com" or "http://localhost:11434".
	// The client posts to URL + "/v1/embeddings", except that a URL whose path already ends in
	// "/embeddings" is used as it is, and one ending in "/v1" gets only "/embeddings" appended.
	// A query string (e.g. "?api-version=...") is kept. Required.
	URL string
	// Model is the provider's model name, e.g. "text-embedding-3-small". Required.
	Model string
	// APIKey, when set, is sent as "Authorization: Bearer <APIKey>".
	APIKey string
	// Dimensions, when > 0, is sent as "dimensions" (for models that can shorten their vectors) and
	// every returned vector must have that length. When 0, the length is learned from the first
	// response and then fixed: a later response of another length is an error.
	Dimensions int
	// BatchSize is the maximum number of inputs per request; 0 means DefaultOpenAIBatchSize.
	BatchSize int
	// Timeout bounds each HTTP request (not the whole Embed call, which ctx bounds); 0 means
	// DefaultOpenAITimeout.
	Timeout time.Duration
	// MaxRetries is how many times a failed request is retried: 0 means DefaultOpenAIMaxRetries,
	// a negative value means never. Retried are 429, 5xx, network errors and per-request timeouts,
	// with exponential backoff and jitter, or after the server's Retry-After (capped at 2 minutes)
	// when it sends one. Other 4xx responses and malformed responses are never retried.
	MaxRetries int
	// HTTPClient sends the requests; nil means a new http.Client with the default transport.
	HTTPClient *http.Client
}

// OpenAI is an Embedder backed by an OpenAI-compatible /v1/embeddings endpoint. It is safe for
// concurrent use. Batches of one Embed call are sent one after another.
type OpenAI struct {
	endpoint   string
	model      string
	apiKey     string
	sendDims   int
	dims       atomic.Int64
	batchSize  int
	timeout    time.Duration
	maxRetries int
	client     *http.Client
	backoff    time.Duration // first retry's backoff; doubled per attempt; tests shorten it
}

var _ Embedder = (*OpenAI)(nil)

// NewOpenAI validates cfg, applies its defaults and returns a client. It makes no request.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if cfg.Model == "" {
		return nil, errors.New("embed: openai: Model is required")
	}
	if cfg.URL == "" {
		return nil, errors.New("embed: openai: URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("embed: openai: URL %q is not an http(s) URL", cfg.URL)
	}
	if cfg.Dimensions < 0 || cfg.BatchSize < 0 || cfg.Timeout < 0 {
		return nil, errors.New("embed: openai: Dimensions, BatchSize and Timeout must not be negative")
	}
	path := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(path, "/embeddings"):
	case strings.HasSuffix(path, "/v1"):
		path += "/embeddings"
	default:
		path += "/v1/embeddings"
	}
	u.Path, u.RawPath = path, ""

	o := &OpenAI{
		endpoint:   u.String(),
		model:      cfg.Model,
		apiKey:     cfg.APIKey,
		sendDims:   cfg.Dimensions,
		batchSize:  orDefault(cfg.BatchSize, DefaultOpenAIBatchSize),
		timeout:    orDefault(cfg.Timeout, DefaultOpenAITimeout),
		maxRetries: orDefault(cfg.MaxRetries, DefaultOpenAIMaxRetries),
		client:     cfg.HTTPClient,
		backoff:    defaultBackoff,
	}
	if o.maxRetries < 0 {
		o.maxRetries = 0
	}
	if o.client == nil {
		o.client = &http.Client{}
	}
	o.dims.Store(int64(cfg.Dimensions))
	return o, nil
}

// orDefault returns v, or def when v is zero.
func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Endpoint returns the URL requests are posted to.
func (o *OpenAI) Endpoint() string { return o.endpoint }

// Dimensions returns the vector length: the configured one, or the one learned from the first
// response; 0 until then.
func (o *OpenAI) Dimensions() int { return int(o.dims.Load()) }

// Name returns "openai:<model>:<dims>". Its dims part is 0 until Dimensions is known (configured,
// or learned by a first Embed), so take the Name for an index only after that.
func (o *OpenAI) Name() string { return fmt.Sprintf("openai:%s:%d", o.model, o.Dimensions()) }

// APIError is a non-2xx answer from the provider.
type APIError struct {
	StatusCode int    // HTTP status
	Message    string // the provider's error message, or the start of the response body
	Type, Code string // the provider's error type and code, when it gives them
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Code != "" {
		msg += " (code " + e.Code + ")"
	}
	return msg
}

// Embed returns one vector per text, in order, sending at most BatchSize texts per request.
func (o *OpenAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for from := 0; from < len(texts); from += o.batchSize {
		to := min(from+o.batchSize, len(texts))
		vecs, err := o.embedBatch(ctx, texts[from:to])
		if err != nil {
			if len(texts) > to-from {
				return nil, fmt.Errorf("embed: openai: %s: inputs %d-%d of %d: %w", o.model, from, to-1, len(texts), err)
			}
			return nil, fmt.Errorf("embed: openai: %s: %w", o.model, err)
		}
		out = append(out, vecs...)
	}
	return out, nil
}

type embeddingsRequest struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     int      `json:"dimensions,omitempty"`
}

type embeddingsResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

func (o *OpenAI) embedBatch(ctx context.Context, inputs []string) ([][]float32, error) {
	body, err := json.Marshal(embeddingsRequest{Model: o.model, Input: inputs, EncodingFormat: "float", Dimensions: o.sendDims})
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		vecs, retry, retryAfter, err := o.post(ctx, body, len(inputs))
		if err == nil {
			return vecs, nil
		}
		if !retry || attempt >= o.maxRetries || ctx.Err() != nil {
			if attempt > 0 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return nil, err
		}
		wait := retryAfter
		if wait <= 0 {
			// Exponential backoff with equal jitter: half fixed, half random.
			d := min(o.backoff<<attempt, maxBackoff)
			wait = d/2 + rand.N(d/2+1)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (while waiting to retry after: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// post makes one request. retry tells whether a failure is worth retrying; retryAfter is the
// server's Retry-After, if any.
func (o *OpenAI) post(ctx context.Context, body []byte, n int) (vecs [][]float32, retry bool, retryAfter time.Duration, err error) {
	rctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, o.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, false, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if o.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.apiKey)
	}

	// transportErr describes a failure to get a complete answer; it is retried unless the
	// caller's context ended.
	transportErr := func(err error) ([][]float32, bool, time.Duration, error) {
		if ctx.Err() == nil && rctx.Err() != nil {
			return nil, true, 0, fmt.Errorf("POST %s: request timed out after %v: %w", o.endpoint, o.timeout, err)
		}
		return nil, ctx.Err() == nil, 0, fmt.Errorf("POST %s: %w", o.endpoint, err)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return transportErr(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return transportErr(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := parseAPIError(resp.StatusCode, data)
		retry := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		var after time.Duration
		if retry {
			after = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return nil, retry, after, apiErr
	}
	if len(data) > maxResponseBytes {
		return nil, false, 0, fmt.Errorf("response larger than %d bytes", maxResponseBytes)
	}
	vecs, err = o.decode(data, n)
	return vecs, false, 0, err
}

// decode parses a 2xx body, puts the vectors in input order and checks their number and length.
func (o *OpenAI) decode(data []byte, n int) ([][]float32, error) {
	var r embeddingsResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("malformed response: %w", err)
	}
	if len(r.Data) != n {
		return nil, fmt.Errorf("sent %d inputs but got %d embeddings", n, len(r.Data))
	}
	vecs := make([][]float32, n)
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= n {
			return nil, fmt.Errorf("embedding index %d out of range for %d inputs", d.Index, n)
		}
		if vecs[d.Index] != nil {
			return nil, fmt.Errorf("embedding index %d appears twice", d.Index)
		}
		if len(d.Embedding) == 0 {
			return nil, fmt.Errorf("embedding %d is empty", d.Index)
		}
		vecs[d.Index] = d.Embedding
	}
	got := len(vecs[0])
	for i, v := range vecs {
		if len(v) != got {
			return nil, fmt.Errorf("dimension mismatch within a response: embedding 0 has %d values, embedding %d has %d", got, i, len(v))
		}
	}
	if o.dims.CompareAndSwap(0, int64(got)) {
		return vecs, nil
	}
	if want := o.Dimensions(); got != want {
		return nil, fmt.Errorf("dimension mismatch: got %d-dimensional embeddings, want %d", got, want)
	}
	return vecs, nil
}

// parseAPIError extracts the provider's message from an error body. It understands OpenAI's
// {"error":{"message","type","code"}} and the {"error":"..."} / {"message":"..."} / {"detail":"..."}
// shapes of other compatible servers, and otherwise quotes the start of the body.
func parseAPIError(status int, data []byte) *APIError {
	e := &APIError{StatusCode: status}
	var body struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  any             `json:"detail"`
	}
	if json.Unmarshal(data, &body) == nil {
		var obj struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    any    `json:"code"`
		}
		var s string
		switch {
		case json.Unmarshal(body.Error, &obj) == nil && obj.Message != "":
			e.Message, e.Type = obj.Message, obj.Type
			if obj.Code != nil {
				e.Code = fmt.Sprint(obj.Code)
			}
		case json.Unmarshal(body.Error, &s) == nil && s != "":
			e.Message = s
		case body.Message != "":
			e.Message = body.Message
		case body.Detail != nil:
			if d, err := json.Marshal(body.Detail); err == nil {
				e.Message = strings.Trim(string(d), `"`)
			}
		}
		if e.Message != "" {
			return e
		}
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > maxErrorBody {
		msg = strings.ToValidUTF8(msg[:maxErrorBody], "") + "…"
	}
	e.Message = msg
	return e
}

// parseRetryAfter reads a Retry-After header, in seconds or as an HTTP date; 0 if absent or
// unparseable, at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if !(secs > 0) { // also NaN
			return 0
		}
		if secs >= maxRetryAfter.Seconds() {
			return maxRetryAfter
		}
		d = time.Duration(secs * float64(time.Second))
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}
