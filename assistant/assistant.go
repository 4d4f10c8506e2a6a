package assistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atlas-workspace/atlas/ai/llm"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
	"github.com/atlas-workspace/atlas/search/index"
)

// Chats is what the assistant needs of the command side.
type Chats interface {
	Chat(ctx context.Context, id uuid.UUID, maxVersion int64) (chat.State, uuid.UUID, error)
	Space(ctx context.Context, id uuid.UUID, maxVersion int64) (space.State, error)
	AdvanceReply(ctx context.Context, st chat.State, tenant uuid.UUID, correlation string, cmd any) (chat.State, eventstore.Position, error)
}

// Log reads a chat's events (for the conversation sent to the model).
type Log interface {
	ReadStream(ctx context.Context, streamID uuid.UUID, maxVersion int64) ([]eventstore.Record, error)
}

// Model streams completions (an *llm.Client).
type Model interface {
	Model() string
	Stream(ctx context.Context, req llm.Request, onDelta func(llm.Delta) error) (llm.Result, error)
}

// Searcher runs the assistant's search tool (a *projections.Searcher).
type Searcher interface {
	Search(ctx context.Context, req projections.SearchRequest) (projections.SearchPage, error)
}

// Config configures an Assistant.
type Config struct {
	Chats  Chats
	Log    Log
	Model  Model         // nil: no assistant is configured
	Search Searcher      // nil: the model gets no search tool
	Pool   *pgxpool.Pool // as the projector role, for the sweeper's look-up of stale replies
	Logger *slog.Logger
	// FlushInterval and FlushBytes bound how long and how much text waits before it is persisted as
	// one chunk event (defaults 250 ms and 1 KiB).
	FlushInterval time.Duration
	FlushBytes    int
	// MaxToolRounds caps the model's rounds of tool calls in one reply (default 4); the round after
	// the last one offers no tools, so the model answers with text.
	MaxToolRounds int
	// StaleAfter is how long a reply may go without progress before the sweeper fails it as
	// interrupted (its writer died); it must exceed the model's idle timeout (default 2 min).
	StaleAfter time.Duration
	// SweepInterval is how often the sweeper looks (default 30 s).
	SweepInterval time.Duration
	Now           func() time.Time
	// Registerer, when set, gets the assistant's metrics.
	Registerer prometheus.Registerer
}

// Assistant writes replies (httpapi.Assistant).
type Assistant struct {
	cfg    Config
	broker *broker
	base   context.Context
	stop   context.CancelFunc

	mu      sync.Mutex
	running map[uuid.UUID]*writer // by reply id
	closed  bool
	wg      sync.WaitGroup

	outcomes *prometheus.CounterVec
	firstTok prometheus.Histogram
}

// New returns an assistant; it writes replies once Start is called, until Run's context ends.
func New(cfg Config) *Assistant {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 250 * time.Millisecond
	}
	if cfg.FlushBytes <= 0 {
		cfg.FlushBytes = 1 << 10
	}
	if cfg.MaxToolRounds <= 0 {
		cfg.MaxToolRounds = 4
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 2 * time.Minute
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	base, stop := context.WithCancel(context.Background())
	a := &Assistant{cfg: cfg, broker: newBroker(), base: base, stop: stop, running: map[uuid.UUID]*writer{},
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "atlas_chat_replies_total",
			Help: "Chat replies ended by this process (or failed by its sweeper), by outcome."}, []string{"outcome"}),
		firstTok: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "atlas_chat_reply_first_delta_seconds",
			Help: "Time from a reply's start in this process to the model's first delta.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(a.outcomes, a.firstTok, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "atlas_chat_replies_running",
			Help: "Chat replies this process is writing now."}, func() float64 { return float64(a.Running()) }))
	}
	return a
}

// Model names the model that writes replies; "" when none is configured.
func (a *Assistant) Model() string {
	if a == nil || a.cfg.Model == nil {
		return ""
	}
	return a.cfg.Model.Model()
}

// Subscribe returns the deltas of the reply this process is writing in chatID and a channel of those
// to come (see httpapi.Assistant).
func (a *Assistant) Subscribe(chatID uuid.UUID) ([]chat.Delta, <-chan chat.Delta, func()) {
	return a.broker.subscribe(chatID)
}

// Stop ends the writing of replyID (uuid.Nil: any reply of chatID) in this process.
func (a *Assistant) Stop(chatID, replyID uuid.UUID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, w := range a.running {
		if w.chatID == chatID && (replyID == uuid.Nil || id == replyID) {
			w.cancel(errStopped)
		}
	}
}

// Running reports how many replies this process is writing.
func (a *Assistant) Running() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.running)
}

var (
	errStopped  = errors.New("the reply was stopped")
	errShutdown = errors.New("the server is shutting down")
	errGone     = errors.New("the reply is no longer being written")
	errNoSpace  = errors.New("the chat's space was deleted")
)

// Start begins writing reply replyID of chatID for viewer, in the background.
func (a *Assistant) Start(chatID, replyID, viewer uuid.UUID) {
	if a.cfg.Model == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.running[replyID] != nil {
		return // the sweeper fails a reply nobody writes
	}
	ctx, cancel := context.WithCancelCause(a.base)
	w := &writer{a: a, chatID: chatID, replyID: replyID, viewer: viewer, cancel: cancel, correlation: replyID.String()}
	a.running[replyID] = w
	a.broker.begin(chatID, replyID)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			a.mu.Lock()
			delete(a.running, replyID)
			a.mu.Unlock()
			a.broker.end(chatID, replyID)
			cancel(nil)
		}()
		w.run(ctx)
	}()
}

// Run sweeps stale replies at once and every SweepInterval until ctx ends; then it stops every
// reply being written here (each is failed as interrupted) and waits for them.
func (a *Assistant) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.SweepInterval)
	defer t.Stop()
	for {
		if a.cfg.Pool != nil {
			if n, err := a.Sweep(ctx); err != nil && ctx.Err() == nil {
				a.cfg.Logger.Warn("chat reply sweep failed", "error", err)
			} else if n > 0 {
				a.cfg.Logger.Info("failed interrupted chat replies", "count", n)
			}
		}
		select {
		case <-ctx.Done():
			a.shutdown()
			return
		case <-t.C:
		}
	}
}

func (a *Assistant) shutdown() {
	a.mu.Lock()
	a.closed = true
	for _, w := range a.running {
		w.cancel(errShutdown)
	}
	a.mu.Unlock()
	a.wg.Wait()
	a.stop()
}

// Sweep fails, as interrupted, every reply that has made no progress for StaleAfter and that this
// process is not writing: its writer died (a crash) or never started. It returns how many it failed.
func (a *Assistant) Sweep(ctx context.Context) (int, error) {
	stale, err := projections.StaleReplies(ctx, a.cfg.Pool, a.cfg.Now().Add(-a.cfg.StaleAfter), 100)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range stale {
		a.mu.Lock()
		_, mine := a.running[s.MessageID]
		a.mu.Unlock()
		if mine {
			continue
		}
		st, tenant, err := a.cfg.Chats.Chat(ctx, s.ChatID, 0)
		if err != nil {
			return n, err
		}
		if st.Streaming == nil || st.Streaming.MessageID != s.MessageID || a.cfg.Now().Sub(st.Streaming.LastProgress) < a.cfg.StaleAfter {
			continue
		}
		_, _, err = a.cfg.Chats.AdvanceReply(ctx, st, tenant, s.MessageID.String(), chat.Fail{MessageID: s.MessageID, Reason: chat.ReasonInterrupted})
		if errors.Is(err, eventstore.ErrVersionConflict) {
			continue // it moved on meanwhile: look again next time
		}
		if err != nil {
			return n, err
		}
		a.outcomes.WithLabelValues("interrupted").Inc()
		n++
	}
	return n, nil
}

// searchTool is the model's search tool: the space's notes, files and chats that the requesting
// user may read.
var searchTool = llm.Tool{
	Name:        "search",
	Description: "Search the notes, files and chats of this space (only what the user may read). Returns titles, snippets and ids.",
	Parameters: json.RawMessage(`{"type":"object","properties":{"query":{"type":"string","description":"what to look for"},` +
		`"mode":{"type":"string","enum":["hybrid","keyword","semantic"],"description":"default hybrid"}},"required":["query"],"additionalProperties":false}`),
}

const systemPrompt = "You are the assistant of an Atlas workspace space. Answer the user's questions. " +
	"When the answer may be in the space's notes, files or chats, call the search tool and ground your answer in what it returns, naming the titles you used."

// writer writes one reply.
type writer struct {
	a                       *Assistant
	chatID, replyID, viewer uuid.UUID
	tenant                  uuid.UUID
	correlation             string
	cancel                  context.CancelCauseFunc
	ctx                     context.Context // the reply's: ends when it is stopped

	mu        sync.Mutex // guards what follows and serialises appends
	st        chat.State
	offset    int64        // bytes of reasoning and text emitted
	pending   []chat.Delta // emitted, not yet persisted; all of one kind
	pendBytes int
	lastFlush time.Time
	gone      bool
	started   time.Time
	firstSeen bool
}

func (w *writer) log() *slog.Logger {
	return w.a.cfg.Logger.With("chat_id", w.chatID, "message_id", w.replyID)
}

func (w *writer) run(ctx context.Context) {
	// One read of the chat's stream gives both its state and the conversation so far.
	recs, err := w.a.cfg.Log.ReadStream(ctx, w.chatID, 0)
	if err != nil {
		w.log().Error("chat reply: read the chat", "error", err)
		return // the sweeper fails it later
	}
	var st chat.State
	var t chat.Transcript
	for _, r := range recs {
		if r.StreamType != chat.StreamType {
			return
		}
		st = chat.Evolve(st, r.Event)
		t.Apply(r.StreamVersion, r.Event)
		if r.TenantID != nil {
			w.tenant = *r.TenantID
		}
	}
	if st.Streaming == nil || st.Streaming.MessageID != w.replyID {
		return
	}
	w.st, w.offset, w.lastFlush, w.ctx, w.started = st, st.Streaming.Offset, time.Now(), ctx, time.Now()
	msgs := w.conversation(t)
	tick := time.NewTicker(w.a.cfg.FlushInterval / 2)
	tickDone := make(chan struct{})
	go func() {
		for {
			select {
			case <-tickDone:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				w.mu.Lock()
				if len(w.pending) > 0 && time.Since(w.lastFlush) >= w.a.cfg.FlushInterval {
					if err := w.flushLocked(ctx); err != nil && !errors.Is(err, errGone) && ctx.Err() == nil {
						w.log().Warn("chat reply: persist a chunk", "error", err)
					}
				}
				w.mu.Unlock()
			}
		}
	}()
	defer func() { tick.Stop(); close(tickDone) }()
	// A deleted space ends the reply: nothing more is written into it.
	go w.watchSpace(ctx, st.SpaceID, tickDone)
	err = w.converse(ctx, msgs)
	w.a.outcomes.WithLabelValues(outcome(ctx, err)).Inc()
	w.finish(ctx, err)
}

// outcome names how a reply ended, for the metrics.
func outcome(ctx context.Context, err error) string {
	cause := context.Cause(ctx)
	var pe *llm.ProviderError
	switch {
	case err == nil:
		return "completed"
	case errors.Is(err, errGone) || errors.Is(cause, errGone) || errors.Is(cause, errStopped):
		return "cancelled"
	case errors.Is(cause, errShutdown):
		return "interrupted"
	case errors.Is(cause, errNoSpace):
		return "space_deleted"
	case errors.Is(err, llm.ErrStalled):
		return "stalled"
	case errors.As(err, &pe):
		return "provider_error"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}

// spaceCheck is how often a writer checks that the chat's space still exists.
const spaceCheck = 2 * time.Second

// watchSpace stops the writer when the chat's space is deleted (the space's stream, not the chat's,
// records that, so no append of the writer conflicts with it).
func (w *writer) watchSpace(ctx context.Context, spaceID uuid.UUID, done <-chan struct{}) {
	t := time.NewTicker(spaceCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
			sp, err := w.a.cfg.Chats.Space(ctx, spaceID, 0)
			if err == nil && !sp.Exists() {
				w.cancel(errNoSpace)
				return
			}
		}
	}
}

// converse runs the model, and its tool calls, until it answers with text.
func (w *writer) converse(ctx context.Context, msgs []llm.Message) error {
	for round := 0; ; round++ {
		req := llm.Request{Messages: msgs}
		if round < w.a.cfg.MaxToolRounds && w.a.cfg.Search != nil {
			req.Tools = []llm.Tool{searchTool}
		}
		res, err := w.a.cfg.Model.Stream(ctx, req, w.onDelta)
		if ferr := w.flush(ctx); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		if len(res.ToolCalls) == 0 || len(req.Tools) == 0 {
			return w.advance(ctx, chat.Complete{MessageID: w.replyID, FinishReason: res.FinishReason})
		}
		msgs = append(msgs, llm.Message{Role: "assistant", Content: res.Text, ToolCalls: res.ToolCalls})
		for i, call := range res.ToolCalls {
			if call.ID == "" {
				call.ID = fmt.Sprintf("call_%d_%d", round, i)
				res.ToolCalls[i].ID = call.ID
			}
			input := call.Arguments
			if !json.Valid([]byte(input)) {
				b, _ := json.Marshal(input)
				input = string(b)
			}
			if err := w.advance(ctx, chat.CallTool{MessageID: w.replyID, ToolCallID: call.ID, Name: call.Name, Input: input}); err != nil {
				return err
			}
			out := w.runTool(ctx, call)
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			if err := w.advance(ctx, chat.ToolResult{MessageID: w.replyID, ToolCallID: call.ID, Name: call.Name, Output: out}); err != nil {
				return err
			}
			msgs = append(msgs, llm.Message{Role: "tool", ToolCallID: call.ID, Content: out})
		}
	}
}

// runTool executes a tool call and returns its JSON result; failures are results the model reads.
func (w *writer) runTool(ctx context.Context, call llm.ToolCall) string {
	fail := func(msg string) string {
		b, _ := json.Marshal(map[string]string{"error": msg})
		return string(b)
	}
	if call.Name != searchTool.Name || w.a.cfg.Search == nil {
		return fail(fmt.Sprintf("unknown tool %q; the only tool is search", call.Name))
	}
	var args struct {
		Query string `json:"query"`
		Mode  string `json:"mode"`
	}
	if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil {
		return fail("the arguments must be a JSON object {query, mode?}: " + err.Error())
	}
	args.Query = strings.TrimSpace(args.Query)
	switch {
	case args.Query == "":
		return fail("query is required")
	case args.Mode == "":
		args.Mode = index.Hybrid
	case args.Mode != index.Hybrid && args.Mode != index.Keyword && args.Mode != index.Semantic:
		return fail("mode must be hybrid, keyword or semantic")
	}
	space := w.st.SpaceID
	page, err := w.a.cfg.Search.Search(ctx, projections.SearchRequest{Viewer: w.viewer, Text: args.Query, Mode: args.Mode, SpaceID: &space, Limit: 8})
	if err != nil {
		if ctx.Err() == nil {
			w.log().Warn("chat reply: search tool", "error", err)
		}
		var de *domain.Error
		if errors.As(err, &de) && de.Code != domain.CodeInternal {
			return fail("search failed: " + de.Message)
		}
		return fail("search is unavailable right now")
	}
	type result struct {
		Kind    string  `json:"kind"`
		ID      string  `json:"id"`
		Title   string  `json:"title"`
		Snippet string  `json:"snippet"`
		Score   float64 `json:"score"`
	}
	out := struct {
		Results  []result `json:"results"`
		Degraded bool     `json:"degraded,omitempty"`
	}{Results: []result{}, Degraded: page.Degraded}
	for _, it := range page.Items {
		out.Results = append(out.Results, result{Kind: it.Kind, ID: it.ID.String(), Title: it.Title, Snippet: it.Snippet, Score: it.Score})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// conversation is the chat so far as the model reads it: the user messages and the completed
// replies before this one.
func (w *writer) conversation(t chat.Transcript) []llm.Message {
	msgs := []llm.Message{{Role: "system", Content: systemPrompt}}
	for _, m := range t.Messages {
		if m.ID == w.replyID {
			break
		}
		var b strings.Builder
		for _, p := range m.Parts {
			var s string
			switch p.Type {
			case chat.PartText:
				s = p.Text
			case chat.PartFile:
				if p.FileID != nil {
					s = fmt.Sprintf("[attached file %q (%s), id %s]", p.Filename, p.MediaType, p.FileID)
				}
			}
			if s != "" {
				if b.Len() > 0 {
					b.WriteString("\n\n")
				}
				b.WriteString(s)
			}
		}
		switch {
		case m.Role == chat.RoleUser:
			msgs = append(msgs, llm.Message{Role: "user", Content: b.String()})
		case m.Status == chat.StatusComplete && b.Len() > 0:
			msgs = append(msgs, llm.Message{Role: "assistant", Content: b.String()})
		}
	}
	return msgs
}

// onDelta hands a piece of the reply to live subscribers and queues it for persistence.
func (w *writer) onDelta(d llm.Delta) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return errGone
	}
	if !w.firstSeen {
		w.firstSeen = true
		w.a.firstTok.Observe(time.Since(w.started).Seconds())
	}
	for _, piece := range []struct {
		reasoning bool
		text      string
	}{{true, d.Reasoning}, {false, d.Text}} {
		if piece.text == "" {
			continue
		}
		if len(w.pending) > 0 && w.pending[0].Reasoning != piece.reasoning {
			if err := w.flushLocked(w.ctx); err != nil {
				return err
			}
		}
		delta := chat.Delta{MessageID: w.replyID, Offset: w.offset, Reasoning: piece.reasoning, Text: piece.text}
		w.offset += int64(len(piece.text))
		w.a.broker.publish(w.chatID, delta)
		w.pending = append(w.pending, delta)
		w.pendBytes += len(piece.text)
	}
	if w.pendBytes >= w.a.cfg.FlushBytes {
		return w.flushLocked(w.ctx)
	}
	return nil
}

func (w *writer) flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked(ctx)
}

// flushLocked persists the pending text as one chunk event.
func (w *writer) flushLocked(ctx context.Context) error {
	if len(w.pending) == 0 {
		return nil
	}
	var b strings.Builder
	for _, d := range w.pending {
		b.WriteString(d.Text)
	}
	cmd := chat.AppendText{MessageID: w.replyID, Offset: w.pending[0].Offset}
	if w.pending[0].Reasoning {
		cmd.Reasoning = b.String()
	} else {
		cmd.Text = b.String()
	}
	if err := w.advanceLocked(ctx, cmd); err != nil {
		return err
	}
	w.pending, w.pendBytes, w.lastFlush = nil, 0, time.Now()
	return nil
}

func (w *writer) advance(ctx context.Context, cmd any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.advanceLocked(ctx, cmd)
}

// advanceLocked appends cmd's events at the chat's version. When the chat moved on (another process
// appended: a cancel, a deletion, a rename), it reloads: if the reply is no longer being written it
// stops the writer (errGone), else it decides again.
func (w *writer) advanceLocked(ctx context.Context, cmd any) error {
	if w.gone {
		return errGone
	}
	for attempt := 0; ; attempt++ {
		st, _, err := w.a.cfg.Chats.AdvanceReply(ctx, w.st, w.tenant, w.correlation, cmd)
		if err == nil {
			w.st = st
			return nil
		}
		if !errors.Is(err, eventstore.ErrVersionConflict) || attempt >= 5 {
			return err
		}
		fresh, _, err := w.a.cfg.Chats.Chat(ctx, w.chatID, 0)
		if err != nil {
			return err
		}
		w.st = fresh
		if fresh.Streaming == nil || fresh.Streaming.MessageID != w.replyID {
			w.gone = true
			w.cancel(errGone)
			return errGone
		}
	}
}

// finish ends the reply after converse returned err: failed with the reason, or, when it was
// stopped, nothing more (the cancel or deletion is recorded) or interrupted (shutting down).
func (w *writer) finish(ctx context.Context, err error) {
	if err == nil {
		return
	}
	cause := context.Cause(ctx)
	if errors.Is(err, errGone) || errors.Is(cause, errGone) {
		return
	}
	reason := failureReason(err)
	if ctx.Err() != nil {
		reason = chat.ReasonInterrupted
		switch {
		case errors.Is(cause, errStopped):
			reason = chat.ReasonCancelledByViewer
		case errors.Is(cause, errNoSpace):
			reason = errNoSpace.Error()
		}
		w.log().Info("chat reply stopped", "cause", cause)
	} else {
		w.log().Warn("chat reply failed", "reason", reason, "error", err)
	}
	// The reply's context may be over: record the end with a short one of its own.
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	// What live subscribers saw is kept, then the end is recorded.
	if err := w.flushLocked(fctx); err != nil && !errors.Is(err, errGone) {
		w.log().Warn("chat reply: persist the last chunk", "error", err)
	}
	w.pending, w.pendBytes = nil, 0
	if err := w.advanceLocked(fctx, chat.Fail{MessageID: w.replyID, Reason: reason}); err != nil && !errors.Is(err, errGone) {
		w.log().Error("chat reply: record the failure (the sweeper will)", "error", err)
	}
}

// failureReason says why a reply failed, for people.
func failureReason(err error) string {
	var pe *llm.ProviderError
	switch {
	case errors.Is(err, llm.ErrStalled):
		return "stalled: " + err.Error()
	case errors.As(err, &pe):
		return "provider error: " + pe.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout: " + err.Error()
	}
	// Anything else is Atlas's own failure (the database, say): its details go to the log only.
	return "error: the reply could not be written; see the server log"
}
