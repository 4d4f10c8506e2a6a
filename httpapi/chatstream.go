package httpapi

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// maxHeldDeltas bounds the live deltas a stream holds while it waits for the persisted events that
// come before them.
const maxHeldDeltas = 4096

// chatStreamPosition is where a chat stream client stands: every event up to stream version After
// was delivered, and Offset bytes of the reply being written then (-1: as much as was persisted).
type chatStreamPosition struct {
	After  int64
	Offset int64
}

// parseChatEventID reads a Last-Event-ID of a chat stream: "<version>" or "<version>.<offset>".
func parseChatEventID(id string) (chatStreamPosition, error) {
	p := chatStreamPosition{Offset: -1}
	if id == "" {
		return p, nil
	}
	v, off, dotted := strings.Cut(id, ".")
	var err error
	if p.After, err = strconv.ParseInt(v, 10, 64); err != nil || p.After < 0 {
		return p, domain.Errorf(domain.CodeBadRequest, "Last-Event-ID %q is not an event id of this stream", id)
	}
	if dotted {
		if p.Offset, err = strconv.ParseInt(off, 10, 64); err != nil || p.Offset < 0 {
			return p, domain.Errorf(domain.CodeBadRequest, "Last-Event-ID %q is not an event id of this stream", id)
		}
	}
	return p, nil
}

type deltaDTO struct {
	MessageID uuid.UUID `json:"message_id"`
	Type      string    `json:"type"` // text or reasoning
	Text      string    `json:"text"`
	Offset    int64     `json:"offset"`
}

type partEventDTO struct {
	MessageID uuid.UUID            `json:"message_id"`
	Part      projections.ChatPart `json:"part"`
}

type endedDTO struct {
	MessageID uuid.UUID `json:"message_id"`
	Error     string    `json:"error,omitempty"`
}

func messageDTO(chatID uuid.UUID, m chat.Message) projections.ChatMessageView {
	return projections.ChatMessageView{ID: m.ID, ChatID: chatID, Seq: m.Seq, Role: m.Role, Status: m.Status, Parts: projections.PartsFromDomain(m.Parts),
		Model: nonEmpty(m.Model), ReplyTo: m.ReplyTo, Error: nonEmpty(m.Error), FinishReason: nonEmpty(m.FinishReason), AuthorID: m.AuthorID,
		CreatedAt: m.CreatedAt.UTC(), UpdatedAt: m.UpdatedAt.UTC(), CompletedAt: m.CompletedAt}
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// chatStream is one client's view of a chat's events: what it has been sent, so that persisted
// chunks and live deltas (which carry the same text) reach it exactly once, in order.
type chatStream struct {
	s      *Server
	sse    *sseStream
	chatID uuid.UUID
	after  int64     // the last persisted version processed
	reply  uuid.UUID // the reply being written as of after (uuid.Nil: none)
	stored int64     // bytes of that reply persisted up to after
	sent   int64     // bytes of that reply delivered to the client
	held   []chat.Delta
	done   map[uuid.UUID]bool // replies that ended: their late live deltas are dropped
	ended  bool               // the chat was deleted
}

// id is the event id that says where the client stands after an event at version after.
func (cs *chatStream) id() string {
	if cs.reply != uuid.Nil && cs.sent > cs.stored {
		return strconv.FormatInt(cs.after, 10) + "." + strconv.FormatInt(cs.sent, 10)
	}
	return strconv.FormatInt(cs.after, 10)
}

// sendText delivers the part of a piece of the reply (at offset, of a kind) the client lacks.
func (cs *chatStream) sendText(id uuid.UUID, offset int64, reasoning bool, text string, withID func() string) error {
	end := offset + int64(len(text))
	if id != cs.reply || end <= cs.sent || offset > cs.sent {
		return nil
	}
	tail := text[cs.sent-offset:]
	cs.sent = end
	kind := chat.PartText
	if reasoning {
		kind = chat.PartReasoning
	}
	return cs.sse.Send(withID(), "message.delta", deltaDTO{MessageID: id, Type: kind, Text: tail, Offset: end - int64(len(tail))})
}

// persisted sends what an event of the chat's stream means to the client.
func (cs *chatStream) persisted(ctx context.Context, r eventstore.Record) error {
	cs.after = r.StreamVersion
	idNow := func() string { return cs.id() }
	switch e := r.Event.(type) {
	case chat.Renamed:
		return cs.sse.Send(cs.id(), "chat.updated", map[string]any{"id": cs.chatID, "title": e.Title, "version": r.StreamVersion})
	case chat.Deleted:
		cs.ended = true
		return cs.sse.Send(cs.id(), "chat.deleted", map[string]any{"id": cs.chatID})
	case chat.MessagePosted:
		var t chat.Transcript
		t.Apply(r.StreamVersion, e)
		return cs.sse.Send(cs.id(), "message.created", messageDTO(cs.chatID, t.Messages[0]))
	case chat.ReplyStarted:
		cs.reply, cs.stored, cs.sent = e.MessageID, 0, 0
		var t chat.Transcript
		t.Apply(r.StreamVersion, e)
		return cs.sse.Send(cs.id(), "message.created", messageDTO(cs.chatID, t.Messages[0]))
	case chat.ReplyTextAppended:
		if e.MessageID != cs.reply {
			return nil
		}
		cs.stored = e.Offset + int64(len(e.Reasoning)+len(e.Text))
		firstID := idNow
		if e.Reasoning != "" && e.Text != "" {
			// Two pieces under one version: the first one's id must not claim the second.
			firstID = func() string { return strconv.FormatInt(r.StreamVersion-1, 10) + "." + strconv.FormatInt(cs.sent, 10) }
		}
		if err := cs.sendText(e.MessageID, e.Offset, true, e.Reasoning, firstID); err != nil {
			return err
		}
		return cs.sendText(e.MessageID, e.Offset+int64(len(e.Reasoning)), false, e.Text, idNow)
	case chat.ReplyToolCalled:
		p := projections.PartsFromDomain([]chat.Part{{Type: chat.PartToolCall, ToolCallID: e.ToolCallID, ToolName: e.ToolName, Input: e.Input}})[0]
		return cs.sse.Send(cs.id(), "message.part", partEventDTO{MessageID: e.MessageID, Part: p})
	case chat.ReplyToolResulted:
		p := projections.PartsFromDomain([]chat.Part{{Type: chat.PartToolResult, ToolCallID: e.ToolCallID, ToolName: e.ToolName, Output: e.Output}})[0]
		return cs.sse.Send(cs.id(), "message.part", partEventDTO{MessageID: e.MessageID, Part: p})
	case chat.ReplyCompleted:
		cs.endReply(e.MessageID)
		m, err := cs.message(ctx, e.MessageID, r.StreamVersion)
		if err != nil {
			return err
		}
		return cs.sse.Send(cs.id(), "message.completed", m)
	case chat.ReplyFailed:
		cs.endReply(e.MessageID)
		return cs.sse.Send(cs.id(), "message.failed", endedDTO{MessageID: e.MessageID, Error: e.Reason})
	case chat.ReplyCancelled:
		cs.endReply(e.MessageID)
		return cs.sse.Send(cs.id(), "message.cancelled", endedDTO{MessageID: e.MessageID})
	}
	return nil
}

func (cs *chatStream) endReply(id uuid.UUID) {
	if cs.done == nil {
		cs.done = map[uuid.UUID]bool{}
	}
	cs.done[id] = true
	if id == cs.reply {
		cs.reply, cs.stored, cs.sent, cs.held = uuid.Nil, 0, 0, nil
	}
}

// message is a whole message as the chat's events up to version leave it.
func (cs *chatStream) message(ctx context.Context, id uuid.UUID, version int64) (projections.ChatMessageView, error) {
	recs, err := cs.s.deps.Log.ReadStream(ctx, cs.chatID, version)
	if err != nil {
		return projections.ChatMessageView{}, err
	}
	var t chat.Transcript
	for _, r := range recs {
		t.Apply(r.StreamVersion, r.Event)
	}
	m, ok := t.Find(id)
	if !ok {
		return projections.ChatMessageView{}, domain.Errorf(domain.CodeInternal, "message %s is not in chat %s", id, cs.chatID)
	}
	return messageDTO(cs.chatID, *m), nil
}

// live delivers the held live deltas that follow what the client has; those that come after a gap
// wait for the persisted chunk that fills it.
func (cs *chatStream) live() error {
	keep := cs.held[:0]
	for _, d := range cs.held {
		switch {
		case cs.done[d.MessageID]:
			// A delta of a reply that ended: its persisted events carried it.
		case d.MessageID != cs.reply && cs.reply != uuid.Nil:
			// A delta of a reply that already ended (or another one): persisted events carry it.
		case d.End() <= cs.sent && d.MessageID == cs.reply:
		case d.MessageID != cs.reply || d.Offset > cs.sent:
			keep = append(keep, d) // its reply's start, or the text before it, is not persisted yet
		default:
			if err := cs.sendText(d.MessageID, d.Offset, d.Reasoning, d.Text, func() string {
				return strconv.FormatInt(cs.after, 10) + "." + strconv.FormatInt(d.End(), 10)
			}); err != nil {
				return err
			}
		}
	}
	if len(keep) > maxHeldDeltas {
		keep = keep[len(keep)-maxHeldDeltas:]
	}
	cs.held = keep
	return nil
}

// streamChat is GET /chats/{chat_id}/stream: the chat's events as Server-Sent Events. A client
// without Last-Event-ID starts at the chat's current state; with one it resumes exactly after it:
// persisted events are read from the log, the reply being written in this process arrives as live
// deltas before its chunks are persisted, and each piece of text is sent once.
func (s *Server) streamChat(c echo.Context) error {
	chatID, err := pathUUID(c, "chat_id")
	if err != nil {
		return err
	}
	pos, err := parseChatEventID(lastEventID(c))
	if err != nil {
		return err
	}
	viewer := userID(c)
	st, _, err := s.deps.Commands.ChatFor(c.Request().Context(), viewer, chatID)
	if err != nil {
		return err
	}
	if !st.Exists() {
		return domain.Errorf(domain.CodeNotFound, "chat not found")
	}
	// Where the client stands: the reply being written at that version and how much of it it has.
	if lastEventID(c) == "" {
		pos.After = st.Version
	}
	if pos.After > st.Version {
		return domain.Errorf(domain.CodeBadRequest, "Last-Event-ID %q is ahead of the chat (version %d)", lastEventID(c), st.Version)
	}
	var at chat.State // the chat as the client has it (nothing at version 0)
	if pos.After > 0 {
		if at, _, err = s.deps.Commands.Chat(c.Request().Context(), chatID, pos.After); err != nil {
			return err
		}
	}
	cs := &chatStream{s: s, chatID: chatID, after: pos.After, done: map[uuid.UUID]bool{}}
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

	ctx, cancel := s.streamContext(c)
	defer cancel()
	var liveCh <-chan chat.Delta
	stopLive := func() {}
	defer func() { stopLive() }()
	subscribe := func() {
		if s.deps.Assistant == nil {
			return
		}
		var snapshot []chat.Delta
		snapshot, liveCh, stopLive = s.deps.Assistant.Subscribe(chatID)
		cs.held = append(cs.held, snapshot...)
	}
	subscribe()
	cs.sse = startSSE(c)
	recheck := time.Now()
	idleSince := time.Now()
	readLog := true
	for {
		var wake <-chan struct{}
		if s.deps.Signal != nil {
			_, wake, _ = s.deps.Signal.Snapshot()
		}
		if readLog {
			recs, err := s.deps.Log.ReadStreamAfter(ctx, chatID, cs.after, followBatch)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, r := range recs {
				if err := cs.persisted(ctx, r); err != nil {
					return nil // the client went away
				}
				if cs.ended {
					return nil
				}
				idleSince = time.Now()
			}
			if len(recs) == followBatch {
				continue
			}
		}
		if err := cs.live(); err != nil {
			return nil
		}
		if !readLog && len(cs.held) > 0 {
			readLog = true // a delta waits for persisted events: read them now rather than at the next signal
			continue
		}
		// Access can be taken away while the stream is open: look again now and then.
		if time.Since(recheck) > 30*time.Second {
			recheck = time.Now()
			if _, _, err := s.deps.Commands.ChatFor(ctx, viewer, chatID); err != nil {
				return nil
			}
		}
		if time.Since(idleSince) >= keepAlive {
			if err := cs.sse.Comment("keep-alive"); err != nil {
				return nil
			}
			idleSince = time.Now()
		}
		if liveCh == nil {
			subscribe()
		}
		poll := s.deps.FollowPoll
		if poll <= 0 || poll > keepAlive {
			poll = keepAlive
		}
		t := time.NewTimer(poll)
		readLog = true
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
		case <-t.C:
		case d, ok := <-liveCh:
			if !ok {
				stopLive()
				liveCh, stopLive = nil, func() {} // fell behind: subscribe again (the snapshot covers it)
				break
			}
			// A live delta alone needs no look at the log (a persisted change signals).
			readLog = false
			cs.held = append(cs.held, d)
		drain:
			for {
				select {
				case d, ok := <-liveCh:
					if !ok {
						break drain
					}
					cs.held = append(cs.held, d)
				default:
					break drain
				}
			}
			idleSince = time.Now()
		}
		t.Stop()
	}
}
