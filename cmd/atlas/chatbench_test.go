package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/ai/llm"
	"github.com/atlas-workspace/atlas/internal/llmtest"
)

// timingProxy forwards chat-completion requests to the fake provider and records when each chunk
// carrying answer text passes through it: the moment the provider's delta reaches its client's
// network input, the reference both for Atlas and for a direct client.
type timingProxy struct {
	target string
	mu     sync.Mutex
	times  []time.Time
}

func (p *timingProxy) reset() {
	p.mu.Lock()
	p.times = nil
	p.mu.Unlock()
}

func (p *timingProxy) chunkTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.times...)
}

func (p *timingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.Path, bytes.NewReader(body))
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	fl, _ := w.(http.Flusher)
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: {") {
			var chunk struct {
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if json.Unmarshal([]byte(line[6:]), &chunk) == nil && len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
				p.mu.Lock()
				p.times = append(p.times, time.Now())
				p.mu.Unlock()
			}
		}
		_, _ = io.WriteString(w, line+"\n")
		if line == "" && fl != nil {
			fl.Flush()
		}
	}
	if fl != nil {
		fl.Flush()
	}
}

// pct is the p-th percentile (0..100) of ds, in milliseconds (ds is left as it was).
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	return percentile(append([]time.Duration(nil), ds...), p/100)
}

// BenchmarkChatStream measures what Atlas adds to a streamed reply, against a direct client of the
// same fake provider behind the same timing proxy: time to first delta (from sending the request,
// for Atlas the POST of the user message, to the first text delta received) and per-delta latency
// (from the delta's chunk passing the proxy to the client receiving it; for Atlas over
// GET /chats/{id}/stream). Each run streams 20 deltas 10 ms apart; runs alternate direct and Atlas.
// Run with -benchtime 1x; it reports p50 and p99 of each and of the difference.
func BenchmarkChatStream(b *testing.B) {
	const runs, deltas, gap = 60, 20, 10 * time.Millisecond
	prov := llmtest.Start(b)
	proxy := &timingProxy{target: prov.URL}
	ps := httptest.NewServer(proxy)
	defer ps.Close()
	app, _ := openApp(b, map[string]string{"LLM_URL": ps.URL, "LLM_MODEL": "bench", "ATLAS_LOG_LEVEL": "error"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- app.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	base := "http://" + ln.Addr().String()
	call := func(method, path, token string, in any) map[string]any {
		raw, _ := json.Marshal(in)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		if res.StatusCode >= 300 {
			b.Fatalf("%s %s: %d %v", method, path, res.StatusCode, out)
		}
		return out
	}
	reg := call("POST", "/api/v1/auth/register", "", map[string]string{"email": fmt.Sprintf("bench-%d@example.com", time.Now().UnixNano()), "password": "correct horse battery", "name": "Bench"})
	token := reg["token"].(string)
	space := reg["user"].(map[string]any)["personal_space_id"].(string)
	chatID := call("POST", "/api/v1/spaces/"+space+"/chats", token, map[string]any{})["id"].(string)

	// One stream for the whole run, read in the background: text deltas and completions, timed.
	type arrival struct {
		event string
		at    time.Time
	}
	arrivals := make(chan arrival, 100000)
	sreq, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/chats/"+chatID+"/stream", nil)
	sreq.Header.Set("Authorization", "Bearer "+token)
	sres, err := http.DefaultClient.Do(sreq)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		defer sres.Body.Close()
		sc := bufio.NewScanner(sres.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = line[7:]
			case strings.HasPrefix(line, "data: ") && (event == "message.completed" || (event == "message.delta" && strings.Contains(line, `"type":"text"`))):
				arrivals <- arrival{event, time.Now()}
			}
		}
	}()

	direct, err := llm.New(llm.Config{URL: ps.URL, Model: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	reply := func() llmtest.Reply {
		r := llmtest.Reply{DeltaDelay: gap}
		for i := 0; i < deltas; i++ {
			r.Deltas = append(r.Deltas, fmt.Sprintf(" w%d", i))
		}
		return r
	}
	var ttfdDirect, ttfdAtlas, ttfdAdded, deltaDirect, deltaAtlas []time.Duration
	for i := 0; i < b.N; i++ {
		for run := 0; run < runs; run++ {
			// Direct client.
			prov.Push(reply())
			proxy.reset()
			var got []time.Time
			start := time.Now()
			if _, err := direct.Stream(ctx, llm.Request{Messages: []llm.Message{{Role: "user", Content: "hi"}}}, func(d llm.Delta) error {
				if d.Text != "" {
					got = append(got, time.Now())
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			chunks := proxy.chunkTimes()
			if len(got) != deltas || len(chunks) != deltas {
				b.Fatalf("direct: %d deltas, %d chunks", len(got), len(chunks))
			}
			d0 := got[0].Sub(start)
			ttfdDirect = append(ttfdDirect, d0)
			for j := range got {
				deltaDirect = append(deltaDirect, got[j].Sub(chunks[j]))
			}

			// Through Atlas.
			prov.Push(reply())
			proxy.reset()
			start = time.Now()
			call("POST", "/api/v1/chats/"+chatID+"/messages", token, map[string]any{"role": "user", "parts": []any{map[string]any{"type": "text", "text": "hi"}}})
			got = got[:0]
			timeout := time.After(30 * time.Second)
		read:
			for {
				select {
				case a := <-arrivals:
					if a.event == "message.completed" {
						break read
					}
					got = append(got, a.at)
				case <-timeout:
					b.Fatal("no completion through Atlas")
				}
			}
			chunks = proxy.chunkTimes()
			if len(got) != deltas || len(chunks) != deltas {
				b.Fatalf("atlas: %d deltas, %d chunks", len(got), len(chunks))
			}
			a0 := got[0].Sub(start)
			ttfdAtlas = append(ttfdAtlas, a0)
			ttfdAdded = append(ttfdAdded, a0-d0)
			for j := range got {
				deltaAtlas = append(deltaAtlas, got[j].Sub(chunks[j]))
			}
			// The chat accepts the next message once the reply's completion is recorded.
			waitUntil := time.Now().Add(10 * time.Second)
			for app.Assistant.Running() > 0 && time.Now().Before(waitUntil) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	b.ReportMetric(pct(ttfdDirect, 50), "ttfd-direct-p50-ms")
	b.ReportMetric(pct(ttfdDirect, 99), "ttfd-direct-p99-ms")
	b.ReportMetric(pct(ttfdAtlas, 50), "ttfd-atlas-p50-ms")
	b.ReportMetric(pct(ttfdAtlas, 99), "ttfd-atlas-p99-ms")
	b.ReportMetric(pct(ttfdAdded, 50), "ttfd-added-p50-ms")
	b.ReportMetric(pct(ttfdAdded, 99), "ttfd-added-p99-ms")
	b.ReportMetric(pct(deltaDirect, 50), "delta-direct-p50-ms")
	b.ReportMetric(pct(deltaDirect, 99), "delta-direct-p99-ms")
	b.ReportMetric(pct(deltaAtlas, 50), "delta-atlas-p50-ms")
	b.ReportMetric(pct(deltaAtlas, 99), "delta-atlas-p99-ms")
	b.ReportMetric(pct(deltaAtlas, 50)-pct(deltaDirect, 50), "delta-added-p50-ms")
	b.ReportMetric(pct(deltaAtlas, 99)-pct(deltaDirect, 99), "delta-added-p99-ms")
}
