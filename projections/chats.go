package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// ChatsProjector names the chats projector.
const ChatsProjector = "chats"

// ChatPart is one part of a message in the API's shape (AI SDK v5 UI-message parts): text and
// reasoning carry text; file parts the file's id, name and media type; tool-call parts the call's id,
// the tool's name and its JSON input; tool-result parts the call's id, the tool's name and the JSON
// output.
type ChatPart struct {
	Type       string          `json:"type"`
	Text       *string         `json:"text,omitempty"`
	FileID     *uuid.UUID      `json:"file_id,omitempty"`
	Filename   string          `json:"filename,omitempty"`
	MediaType  string          `json:"media_type,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	ToolName   string          `json:"tool_name,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
}

// PartsFromDomain turns stored parts into the API's shape.
func PartsFromDomain(parts []chat.Part) []ChatPart {
	out := make([]ChatPart, 0, len(parts))
	for _, p := range parts {
		out = append(out, partFromDomain(p))
	}
	return out
}

func partFromDomain(p chat.Part) ChatPart {
	c := ChatPart{Type: p.Type, FileID: p.FileID, Filename: p.Filename, MediaType: p.MediaType, ToolCallID: p.ToolCallID, ToolName: p.ToolName}
	switch p.Type {
	case chat.PartText, chat.PartReasoning:
		t := p.Text
		c.Text = &t
	case chat.PartToolCall:
		c.Input = jsonOrString(p.Input)
	case chat.PartToolResult:
		c.Output = jsonOrString(p.Output)
	}
	return c
}

// jsonOrString keeps JSON as it is and turns anything else (an erased value) into a JSON string.
func jsonOrString(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// appendText adds text of a kind (text or reasoning) to parts: to the last part when it is of that
// kind, else as a new part.
func appendText(parts []ChatPart, kind, text string) []ChatPart {
	if text == "" {
		return parts
	}
	if n := len(parts); n > 0 && parts[n-1].Type == kind && parts[n-1].Text != nil {
		t := *parts[n-1].Text + text
		parts[n-1].Text = &t
		return parts
	}
	return append(parts, ChatPart{Type: kind, Text: &text})
}

// Chats projects chat events into chats and chat_messages. It also follows space deletions (and so
// organization deletions, which delete every space of the organization): a deleted space's chats and
// messages go, and a chat created in it later in the log is never projected (chat_space_tombstones).
func Chats() *Projector {
	touch := func(ctx context.Context, tx pgx.Tx, r eventstore.Record, at time.Time) error {
		_, err := tx.Exec(ctx, `UPDATE chats SET version = $2, updated_at = $3 WHERE id = $1`, r.StreamID, r.StreamVersion, at)
		return err
	}
	// changeParts rewrites a message's parts in Go: a chunk appends to the last part of its kind.
	changeParts := func(ctx context.Context, tx pgx.Tx, id uuid.UUID, change func([]ChatPart) []ChatPart, set string, args ...any) error {
		var raw []byte
		err := tx.QueryRow(ctx, `SELECT parts FROM chat_messages WHERE id = $1 FOR UPDATE`, id).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // the chat's space was deleted
		}
		if err != nil {
			return err
		}
		var parts []ChatPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return fmt.Errorf("message %s parts: %w", id, err)
		}
		out, err := json.Marshal(change(parts))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE chat_messages SET parts = $2`+set+` WHERE id = $1`, append([]any{id, out}, args...)...)
		return err
	}
	finish := func(ctx context.Context, tx pgx.Tx, r eventstore.Record, id uuid.UUID, status string, reason, finish *string, at time.Time) error {
		if _, err := tx.Exec(ctx, `UPDATE chat_messages SET status = $2, error = $3, finish_reason = $4, version = $5, updated_at = $6, completed_at = $6
			WHERE id = $1`, id, status, reason, finish, r.StreamVersion, at); err != nil {
			return err
		}
		return touch(ctx, tx, r, at)
	}
	return &Projector{
		Name: ChatsProjector, Version: 1, Tables: []string{"chats", "chat_messages", "chat_space_tombstones"},
		Handlers: map[string]Handler{
			chat.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.Created)
				_, err := tx.Exec(ctx, `INSERT INTO chats (id, space_id, tenant_id, title, version, created_by, updated_by, created_at, updated_at)
					SELECT $1, $2, $3, $4, $5, $6, $6, $7, $7
					WHERE NOT EXISTS (SELECT 1 FROM chat_space_tombstones WHERE space_id = $2)
					ON CONFLICT (id) DO NOTHING`,
					e.ChatID, e.SpaceID, tenantOf(r), e.Title, r.StreamVersion, r.Metadata.ActorID, e.CreatedAt)
				return err
			},
			chat.EventRenamed: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.Renamed)
				_, err := tx.Exec(ctx, `UPDATE chats SET title = $2, version = $3, updated_by = $4, updated_at = $5 WHERE id = $1`,
					r.StreamID, e.Title, r.StreamVersion, r.Metadata.ActorID, e.RenamedAt)
				return err
			},
			chat.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				if _, err := tx.Exec(ctx, `DELETE FROM chat_messages WHERE chat_id = $1`, r.StreamID); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM chats WHERE id = $1`, r.StreamID)
				return err
			},
			chat.EventMessagePosted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.MessagePosted)
				parts, err := json.Marshal(PartsFromDomain(e.Parts))
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `INSERT INTO chat_messages (id, chat_id, seq, space_id, tenant_id, role, status, parts, author_id, version, created_at, updated_at, completed_at)
					SELECT $1, c.id, $2, c.space_id, c.tenant_id, $3, 'complete', $4, $5, $2, $6, $6, $6 FROM chats c WHERE c.id = $7
					ON CONFLICT (id) DO NOTHING`,
					e.MessageID, r.StreamVersion, e.Role, parts, e.AuthorID, e.PostedAt, r.StreamID)
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `UPDATE chats SET version = $2, updated_at = $3, message_count = message_count + 1, last_message_at = $3 WHERE id = $1`,
					r.StreamID, r.StreamVersion, e.PostedAt)
				return err
			},
			chat.EventReplyStarted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.ReplyStarted)
				_, err := tx.Exec(ctx, `INSERT INTO chat_messages (id, chat_id, seq, space_id, tenant_id, role, status, parts, model, reply_to, version, created_at, updated_at)
					SELECT $1, c.id, $2, c.space_id, c.tenant_id, 'assistant', 'streaming', '[]', $3, $4, $2, $5, $5 FROM chats c WHERE c.id = $6
					ON CONFLICT (id) DO NOTHING`,
					e.MessageID, r.StreamVersion, e.Model, e.ReplyTo, e.StartedAt, r.StreamID)
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `UPDATE chats SET version = $2, updated_at = $3, message_count = message_count + 1, last_message_at = $3 WHERE id = $1`,
					r.StreamID, r.StreamVersion, e.StartedAt)
				return err
			},
			chat.EventReplyTextAppended: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.ReplyTextAppended)
				if err := changeParts(ctx, tx, e.MessageID, func(p []ChatPart) []ChatPart {
					return appendText(appendText(p, chat.PartReasoning, e.Reasoning), chat.PartText, e.Text)
				}, `, text_offset = $3, version = $4, updated_at = $5`, e.Offset+int64(len(e.Reasoning)+len(e.Text)), r.StreamVersion, e.AppendedAt); err != nil {
					return err
				}
				return touch(ctx, tx, r, e.AppendedAt)
			},
			chat.EventReplyToolCalled: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.ReplyToolCalled)
				part := partFromDomain(chat.Part{Type: chat.PartToolCall, ToolCallID: e.ToolCallID, ToolName: e.ToolName, Input: e.Input})
				if err := changeParts(ctx, tx, e.MessageID, func(p []ChatPart) []ChatPart { return append(p, part) },
					`, version = $3, updated_at = $4`, r.StreamVersion, e.CalledAt); err != nil {
					return err
				}
				return touch(ctx, tx, r, e.CalledAt)
			},
			chat.EventReplyToolResulted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.ReplyToolResulted)
				part := partFromDomain(chat.Part{Type: chat.PartToolResult, ToolCallID: e.ToolCallID, ToolName: e.ToolName, Output: e.Output})
				if err := changeParts(ctx, tx, e.MessageID, func(p []ChatPart) []ChatPart { return append(p, part) },
					`, version = $3, updated_at = $4`, r.StreamVersion, e.ResultedAt); err != nil {
					return err
				}
				return touch(ctx, tx, r, e.ResultedAt)
			},
			chat.EventReplyCompleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.ReplyCompleted)
				var fr *string
				if e.FinishReason != "" {
					fr = &e.FinishReason
				}
				return finish(ctx, tx, r, e.MessageID, chat.StatusComplete, nil, fr, e.CompletedAt)
			},
			chat.EventReplyFailed: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.ReplyFailed)
				return finish(ctx, tx, r, e.MessageID, chat.StatusFailed, &e.Reason, nil, e.FailedAt)
			},
			chat.EventReplyCancelled: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(chat.ReplyCancelled)
				return finish(ctx, tx, r, e.MessageID, chat.StatusCancelled, nil, nil, e.CancelledAt)
			},
			space.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				if _, err := tx.Exec(ctx, `INSERT INTO chat_space_tombstones (space_id) VALUES ($1) ON CONFLICT DO NOTHING`, r.StreamID); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM chat_messages WHERE space_id = $1`, r.StreamID); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM chats WHERE space_id = $1`, r.StreamID)
				return err
			},
		},
	}
}

// ChatView is a chat as the chats read model holds it.
type ChatView struct {
	ID            uuid.UUID  `json:"id"`
	SpaceID       uuid.UUID  `json:"space_id"`
	Title         string     `json:"title"`
	Version       int64      `json:"version"`
	CreatedBy     *uuid.UUID `json:"created_by"`
	UpdatedBy     *uuid.UUID `json:"updated_by"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	MessageCount  int        `json:"message_count"`
	LastMessageAt *time.Time `json:"last_message_at"`
	// IndexState is the search index's state of the chat (single reads only).
	IndexState *IndexState `json:"index_state,omitempty"`
}

// ChatMessageView is one message of a chat.
type ChatMessageView struct {
	ID           uuid.UUID  `json:"id"`
	ChatID       uuid.UUID  `json:"chat_id"`
	Seq          int64      `json:"seq"`
	Role         string     `json:"role"`
	Status       string     `json:"status"`
	Parts        []ChatPart `json:"parts"`
	Model        *string    `json:"model,omitempty"`
	ReplyTo      *uuid.UUID `json:"reply_to,omitempty"`
	Error        *string    `json:"error,omitempty"`
	FinishReason *string    `json:"finish_reason,omitempty"`
	AuthorID     *uuid.UUID `json:"author_id,omitempty"`
	TextOffset   int64      `json:"-"`
	Version      int64      `json:"-"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	CompletedAt  *time.Time `json:"completed_at,omitempty"`
}

const chatColumns = `c.id, c.space_id, c.title, c.version, c.created_by, c.updated_by, c.created_at, c.updated_at, c.message_count, c.last_message_at`

func scanChat(row pgx.Row, extra ...any) (ChatView, error) {
	var v ChatView
	err := row.Scan(append([]any{&v.ID, &v.SpaceID, &v.Title, &v.Version, &v.CreatedBy, &v.UpdatedBy, &v.CreatedAt, &v.UpdatedAt,
		&v.MessageCount, &v.LastMessageAt}, extra...)...)
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	if v.LastMessageAt != nil {
		t := v.LastMessageAt.UTC()
		v.LastMessageAt = &t
	}
	return v, err
}

const chatMessageColumns = `m.id, m.chat_id, m.seq, m.role, m.status, m.parts, m.model, m.reply_to, m.error, m.finish_reason, m.author_id,
	m.text_offset, m.version, m.created_at, m.updated_at, m.completed_at`

func scanChatMessage(row pgx.Row) (ChatMessageView, error) {
	var v ChatMessageView
	var parts []byte
	if err := row.Scan(&v.ID, &v.ChatID, &v.Seq, &v.Role, &v.Status, &parts, &v.Model, &v.ReplyTo, &v.Error, &v.FinishReason, &v.AuthorID,
		&v.TextOffset, &v.Version, &v.CreatedAt, &v.UpdatedAt, &v.CompletedAt); err != nil {
		return v, err
	}
	if err := json.Unmarshal(parts, &v.Parts); err != nil {
		return v, fmt.Errorf("message %s parts: %w", v.ID, err)
	}
	if v.Parts == nil {
		v.Parts = []ChatPart{}
	}
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	if v.CompletedAt != nil {
		t := v.CompletedAt.UTC()
		v.CompletedAt = &t
	}
	return v, nil
}

// Chat returns a chat viewer may read (through its space); CodeNotFound otherwise.
func (q *Queries) Chat(ctx context.Context, viewer, id uuid.UUID) (ChatView, error) {
	var v ChatView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) (err error) {
		var state, reason *string
		v, err = scanChat(rows, &state, &reason)
		if state != nil {
			v.IndexState = &IndexState{State: *state, Reason: reason}
		}
		found = true
		return err
	}, `SELECT `+chatColumns+`, sd.state, sd.reason FROM chats c LEFT JOIN search_docs sd ON sd.doc_id = c.id
		WHERE c.id = $1 AND `+readableSpace("c.space_id"), id, viewer, Anyone)
	if err == nil && !found {
		return v, domain.Errorf(domain.CodeNotFound, "chat not found")
	}
	return v, err
}

// ChatPage is one page of a chat listing.
type ChatPage struct {
	Items      []ChatView
	NextCursor *string
}

// ChatsOf lists a space's chats, oldest first, for a viewer who may read the space; CodeNotFound
// otherwise. A malformed cursor is CodeBadRequest.
func (q *Queries) ChatsOf(ctx context.Context, viewer, spaceID uuid.UUID, cursor string, limit int) (ChatPage, error) {
	items, next, err := inSpace(ctx, q, viewer, spaceID, cursor, limit, "chats",
		`SELECT `+chatColumns+` FROM chats c WHERE c.space_id = $1 AND c.id > $2 ORDER BY c.id LIMIT $3`,
		func(r pgx.Row) (ChatView, error) { return scanChat(r) }, func(v ChatView) uuid.UUID { return v.ID })
	return ChatPage{Items: items, NextCursor: next}, err
}

// ChatMessagePage is one page of a chat's messages.
type ChatMessagePage struct {
	Items      []ChatMessageView
	NextCursor *string
}

// ChatMessages lists a chat's messages in conversation order after the cursor (a seq; "" for the
// first page), for a viewer who may read the chat; CodeNotFound otherwise.
func (q *Queries) ChatMessages(ctx context.Context, viewer, chatID uuid.UUID, cursor string, limit int) (ChatMessagePage, error) {
	items, next, err := numberedChildren(ctx, q, viewer, chatID, cursor, limit, "chat",
		`SELECT EXISTS (SELECT 1 FROM chats c WHERE c.id = $1 AND `+readableSpace("c.space_id")+`)`,
		`SELECT `+chatMessageColumns+` FROM chat_messages m WHERE m.chat_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`,
		scanChatMessage, func(v ChatMessageView) int64 { return v.Seq })
	return ChatMessagePage{Items: items, NextCursor: next}, err
}

// ChatMessage returns one message of a chat viewer may read; CodeNotFound otherwise.
func (q *Queries) ChatMessage(ctx context.Context, viewer, chatID, id uuid.UUID) (ChatMessageView, error) {
	var v ChatMessageView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) (err error) {
		v, err = scanChatMessage(rows)
		found = true
		return err
	}, `SELECT `+chatMessageColumns+` FROM chat_messages m JOIN chats c ON c.id = m.chat_id
		WHERE m.id = $4 AND m.chat_id = $1 AND `+readableSpace("c.space_id"), chatID, viewer, Anyone, id)
	if err == nil && !found {
		return v, domain.Errorf(domain.CodeNotFound, "message not found")
	}
	return v, err
}

// StaleReply is an assistant reply that has made no progress for a while.
type StaleReply struct {
	ChatID, MessageID uuid.UUID
}

// StaleReplies lists replies still "streaming" in the read model whose last change is older than
// before (at most limit), read through pool as the projector role: candidates for the sweeper that
// fails replies whose writer died. The sweeper rechecks each one on the chat's stream.
func StaleReplies(ctx context.Context, pool *pgxpool.Pool, before time.Time, limit int) ([]StaleReply, error) {
	rows, err := pool.Query(ctx, `SELECT chat_id, id FROM chat_messages WHERE status = 'streaming' AND updated_at < $1
		ORDER BY updated_at LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("stale replies: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (StaleReply, error) {
		var s StaleReply
		err := row.Scan(&s.ChatID, &s.MessageID)
		return s, err
	})
}
