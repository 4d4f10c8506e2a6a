package chat

import (
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// Message is a whole message as a chat's events leave it.
type Message struct {
	ID           uuid.UUID
	Seq          int64 // the stream version of the event that created it
	Role         string
	Status       string
	Parts        []Part
	Model        string
	ReplyTo      *uuid.UUID
	Error        string
	FinishReason string
	AuthorID     *uuid.UUID
	CreatedAt    time.Time
	UpdatedAt    time.Time
	CompletedAt  *time.Time
}

// Transcript folds a chat's events into its messages, in conversation order.
type Transcript struct {
	Messages []Message
	index    map[uuid.UUID]int
}

// Find returns the message with id, if any.
func (t *Transcript) Find(id uuid.UUID) (*Message, bool) {
	i, ok := t.index[id]
	if !ok {
		return nil, false
	}
	return &t.Messages[i], true
}

func (t *Transcript) add(m Message) {
	if t.index == nil {
		t.index = map[uuid.UUID]int{}
	}
	if _, dup := t.index[m.ID]; dup {
		return
	}
	t.index[m.ID] = len(t.Messages)
	t.Messages = append(t.Messages, m)
}

// appendText adds text of a kind to a message's parts: to its last part when of that kind.
func appendText(parts []Part, kind, text string) []Part {
	if text == "" {
		return parts
	}
	if n := len(parts); n > 0 && parts[n-1].Type == kind {
		parts[n-1].Text += text
		return parts
	}
	return append(parts, Part{Type: kind, Text: text})
}

// Apply folds the event stored at version into the transcript. Events of other kinds are ignored.
func (t *Transcript) Apply(version int64, e domain.Event) {
	change := func(id uuid.UUID, at time.Time, f func(*Message)) {
		if m, ok := t.Find(id); ok {
			f(m)
			m.UpdatedAt = at
		}
	}
	end := func(id uuid.UUID, at time.Time, status string, f func(*Message)) {
		change(id, at, func(m *Message) {
			m.Status = status
			m.CompletedAt = &at
			if f != nil {
				f(m)
			}
		})
	}
	switch e := e.(type) {
	case MessagePosted:
		author := e.AuthorID
		t.add(Message{ID: e.MessageID, Seq: version, Role: e.Role, Status: StatusComplete, Parts: append([]Part(nil), e.Parts...),
			AuthorID: &author, CreatedAt: e.PostedAt, UpdatedAt: e.PostedAt, CompletedAt: &e.PostedAt})
	case ReplyStarted:
		to := e.ReplyTo
		t.add(Message{ID: e.MessageID, Seq: version, Role: RoleAssistant, Status: StatusStreaming, Parts: []Part{}, Model: e.Model,
			ReplyTo: &to, CreatedAt: e.StartedAt, UpdatedAt: e.StartedAt})
	case ReplyTextAppended:
		change(e.MessageID, e.AppendedAt, func(m *Message) {
			m.Parts = appendText(appendText(m.Parts, PartReasoning, e.Reasoning), PartText, e.Text)
		})
	case ReplyToolCalled:
		change(e.MessageID, e.CalledAt, func(m *Message) {
			m.Parts = append(m.Parts, Part{Type: PartToolCall, ToolCallID: e.ToolCallID, ToolName: e.ToolName, Input: e.Input})
		})
	case ReplyToolResulted:
		change(e.MessageID, e.ResultedAt, func(m *Message) {
			m.Parts = append(m.Parts, Part{Type: PartToolResult, ToolCallID: e.ToolCallID, ToolName: e.ToolName, Output: e.Output})
		})
	case ReplyCompleted:
		end(e.MessageID, e.CompletedAt, StatusComplete, func(m *Message) { m.FinishReason = e.FinishReason })
	case ReplyFailed:
		end(e.MessageID, e.FailedAt, StatusFailed, func(m *Message) { m.Error = e.Reason })
	case ReplyCancelled:
		end(e.MessageID, e.CancelledAt, StatusCancelled, nil)
	}
}
