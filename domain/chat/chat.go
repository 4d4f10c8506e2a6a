// Package chat is the chat aggregate: a conversation in a space between its members and an assistant.
// Every message is a set of events on the chat's stream: a user message is posted whole; an assistant
// reply starts, grows by text chunks, tool calls and tool results, and ends completed, failed or
// cancelled. Message parts follow the AI SDK v5 UI-message shape (text, reasoning, file, tool-call,
// tool-result).
package chat

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// StreamType names the event streams of chats.
const StreamType = "chat"

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventCreated            = "chat.created.v1"
	EventRenamed            = "chat.renamed.v1"
	EventDeleted            = "chat.deleted.v1"
	EventMessagePosted      = "chat.message_posted.v1"
	EventReplyStarted       = "chat.reply_started.v1"
	EventReplyTextAppended  = "chat.reply_text_appended.v1"
	EventReplyToolCalled    = "chat.reply_tool_called.v1"
	EventReplyToolResulted  = "chat.reply_tool_resulted.v1"
	EventReplyCompleted     = "chat.reply_completed.v1"
	EventReplyFailed        = "chat.reply_failed.v1"
	EventReplyCancelled     = "chat.reply_cancelled.v1"
	DefaultTitle            = "New chat"
	MaxTitleLength          = 200       // characters
	MaxMessageBytes         = 256 << 10 // bytes of text over all parts of a posted message
	MaxParts                = 64        // parts of a posted message
	MaxReasonLength         = 1000      // characters of a failure reason kept
	MaxToolPayloadBytes     = 64 << 10  // bytes of a tool call's input or a tool result's output
	ReasonInterrupted       = "interrupted"
	ReasonCancelledByViewer = "cancelled"
)

// Roles of messages.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Part types, as in AI SDK v5 UI messages.
const (
	PartText       = "text"
	PartReasoning  = "reasoning"
	PartFile       = "file"
	PartToolCall   = "tool-call"
	PartToolResult = "tool-result"
)

// Message statuses.
const (
	StatusComplete  = "complete"  // a user message, or a finished reply
	StatusStreaming = "streaming" // a reply being written
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Part is one part of a message. Input and Output are JSON texts (kept as strings so that they can
// be sealed as personal data).
type Part struct {
	Type       string     `json:"type"`
	Text       string     `json:"text,omitempty"`
	FileID     *uuid.UUID `json:"file_id,omitempty"`
	Filename   string     `json:"filename,omitempty"`
	MediaType  string     `json:"media_type,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	ToolName   string     `json:"tool_name,omitempty"`
	Input      string     `json:"input,omitempty"`
	Output     string     `json:"output,omitempty"`
}

// personalFields returns pointers to the free text of parts (which must be the payload's own slice).
func personalFields(parts []Part) []*string {
	var out []*string
	for i := range parts {
		p := &parts[i]
		out = append(out, nonEmpty(&p.Text, &p.Filename, &p.Input, &p.Output)...)
	}
	return out
}

// nonEmpty keeps the fields that hold something: an empty field is neither sealed nor opened, so it
// stays empty (and never reads as erased).
func nonEmpty(fields ...*string) []*string {
	out := fields[:0]
	for _, f := range fields {
		if *f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Created records a new chat. PersonalOwner is the owning user of a personal space (the subject
// whose key seals the chat's free text there); nil in an organization's space.
type Created struct {
	ChatID        uuid.UUID  `json:"chat_id"`
	SpaceID       uuid.UUID  `json:"space_id"`
	Title         string     `json:"title"`
	PersonalOwner *uuid.UUID `json:"personal_owner,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
}

// Renamed records a new title.
type Renamed struct {
	ChatID        uuid.UUID  `json:"chat_id"`
	Title         string     `json:"title"`
	PersonalOwner *uuid.UUID `json:"personal_owner,omitempty"`
	RenamedAt     time.Time  `json:"renamed_at"`
}

// Deleted records the deletion of the chat and all its messages.
type Deleted struct {
	ChatID    uuid.UUID `json:"chat_id"`
	DeletedAt time.Time `json:"deleted_at"`
}

// MessagePosted records a user's message, whole.
type MessagePosted struct {
	ChatID        uuid.UUID  `json:"chat_id"`
	MessageID     uuid.UUID  `json:"message_id"`
	Role          string     `json:"role"`
	Parts         []Part     `json:"parts"`
	AuthorID      uuid.UUID  `json:"author_id"`
	PersonalOwner *uuid.UUID `json:"personal_owner,omitempty"`
	PostedAt      time.Time  `json:"posted_at"`
}

// ReplyStarted records that an assistant reply to a message began (it is "streaming" until it
// completes, fails or is cancelled).
type ReplyStarted struct {
	ChatID    uuid.UUID `json:"chat_id"`
	MessageID uuid.UUID `json:"message_id"`
	ReplyTo   uuid.UUID `json:"reply_to"`
	Model     string    `json:"model"`
	StartedAt time.Time `json:"started_at"`
}

// ReplyTextAppended records a coarse chunk of a reply: reasoning text and answer text produced since
// the previous chunk. Offset is where the chunk starts in the reply's emitted content (bytes of
// reasoning and text together, in the order produced); live deltas use the same offsets.
type ReplyTextAppended struct {
	ChatID        uuid.UUID  `json:"chat_id"`
	MessageID     uuid.UUID  `json:"message_id"`
	Offset        int64      `json:"offset"`
	Reasoning     string     `json:"reasoning,omitempty"`
	Text          string     `json:"text,omitempty"`
	PersonalOwner *uuid.UUID `json:"personal_owner,omitempty"`
	AppendedAt    time.Time  `json:"appended_at"`
}

// ReplyToolCalled records a tool call the assistant made.
type ReplyToolCalled struct {
	ChatID        uuid.UUID  `json:"chat_id"`
	MessageID     uuid.UUID  `json:"message_id"`
	ToolCallID    string     `json:"tool_call_id"`
	ToolName      string     `json:"tool_name"`
	Input         string     `json:"input"`
	PersonalOwner *uuid.UUID `json:"personal_owner,omitempty"`
	CalledAt      time.Time  `json:"called_at"`
}

// ReplyToolResulted records the result of a tool call, as given to the assistant.
type ReplyToolResulted struct {
	ChatID        uuid.UUID  `json:"chat_id"`
	MessageID     uuid.UUID  `json:"message_id"`
	ToolCallID    string     `json:"tool_call_id"`
	ToolName      string     `json:"tool_name"`
	Output        string     `json:"output"`
	PersonalOwner *uuid.UUID `json:"personal_owner,omitempty"`
	ResultedAt    time.Time  `json:"resulted_at"`
}

// ReplyCompleted records the end of a reply: everything it said is in the events before.
type ReplyCompleted struct {
	ChatID       uuid.UUID `json:"chat_id"`
	MessageID    uuid.UUID `json:"message_id"`
	FinishReason string    `json:"finish_reason,omitempty"`
	CompletedAt  time.Time `json:"completed_at"`
}

// ReplyFailed records a reply that ended without an answer (provider error, stall, interruption).
// What was written before stays.
type ReplyFailed struct {
	ChatID    uuid.UUID `json:"chat_id"`
	MessageID uuid.UUID `json:"message_id"`
	Reason    string    `json:"reason"`
	FailedAt  time.Time `json:"failed_at"`
}

// ReplyCancelled records a reply stopped by a member of the space.
type ReplyCancelled struct {
	ChatID      uuid.UUID `json:"chat_id"`
	MessageID   uuid.UUID `json:"message_id"`
	CancelledBy uuid.UUID `json:"cancelled_by"`
	CancelledAt time.Time `json:"cancelled_at"`
}

func (Created) EventName() string           { return EventCreated }
func (Renamed) EventName() string           { return EventRenamed }
func (Deleted) EventName() string           { return EventDeleted }
func (MessagePosted) EventName() string     { return EventMessagePosted }
func (ReplyStarted) EventName() string      { return EventReplyStarted }
func (ReplyTextAppended) EventName() string { return EventReplyTextAppended }
func (ReplyToolCalled) EventName() string   { return EventReplyToolCalled }
func (ReplyToolResulted) EventName() string { return EventReplyToolResulted }
func (ReplyCompleted) EventName() string    { return EventReplyCompleted }
func (ReplyFailed) EventName() string       { return EventReplyFailed }
func (ReplyCancelled) EventName() string    { return EventReplyCancelled }

// subject returns the personal data subject, and whether there is one.
func subject(owner *uuid.UUID) (uuid.UUID, bool) {
	if owner == nil || *owner == uuid.Nil {
		return uuid.Nil, false
	}
	return *owner, true
}

// PersonalData implements domain.PersonalData: the title of a chat in a personal space.
func (e *Created) PersonalData() (uuid.UUID, []*string) {
	s, ok := subject(e.PersonalOwner)
	if !ok {
		return s, nil
	}
	return s, nonEmpty(&e.Title)
}

// PersonalData implements domain.PersonalData: the new title of a chat in a personal space.
func (e *Renamed) PersonalData() (uuid.UUID, []*string) {
	s, ok := subject(e.PersonalOwner)
	if !ok {
		return s, nil
	}
	return s, nonEmpty(&e.Title)
}

// PersonalData implements domain.PersonalData: the free text of every part of a message in a
// personal space. The parts are copied first, so sealing never writes into a caller's slice.
func (e *MessagePosted) PersonalData() (uuid.UUID, []*string) {
	s, ok := subject(e.PersonalOwner)
	if !ok {
		return s, nil
	}
	e.Parts = slices.Clone(e.Parts)
	return s, personalFields(e.Parts)
}

// PersonalData implements domain.PersonalData: a reply chunk's text in a personal space.
func (e *ReplyTextAppended) PersonalData() (uuid.UUID, []*string) {
	s, ok := subject(e.PersonalOwner)
	if !ok {
		return s, nil
	}
	return s, nonEmpty(&e.Reasoning, &e.Text)
}

// PersonalData implements domain.PersonalData: a tool call's input in a personal space.
func (e *ReplyToolCalled) PersonalData() (uuid.UUID, []*string) {
	s, ok := subject(e.PersonalOwner)
	if !ok {
		return s, nil
	}
	return s, nonEmpty(&e.Input)
}

// PersonalData implements domain.PersonalData: a tool result in a personal space.
func (e *ReplyToolResulted) PersonalData() (uuid.UUID, []*string) {
	s, ok := subject(e.PersonalOwner)
	if !ok {
		return s, nil
	}
	return s, nonEmpty(&e.Output)
}

// MessageState is what the aggregate keeps of one message.
type MessageState struct {
	Role   string
	Status string
}

// Reply is the assistant reply being written, if any.
type Reply struct {
	MessageID    uuid.UUID
	ReplyTo      uuid.UUID
	Offset       int64     // bytes of reasoning and text emitted so far
	LastProgress time.Time // when the reply last changed
}

// State is a chat as its events leave it.
type State struct {
	ID            uuid.UUID
	SpaceID       uuid.UUID
	Title         string
	PersonalOwner *uuid.UUID
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Deleted       bool
	Version       int64
	Messages      map[uuid.UUID]MessageState
	Streaming     *Reply // the reply being written (at most one at a time)
}

// Exists reports whether the chat was created and not deleted.
func (s State) Exists() bool { return s.Version > 0 && !s.Deleted }

// Access is what the actor may do in the chat's space: readers read, writers post and manage chats.
type Access struct {
	Read, Write bool
}

// Create asks for a new chat in a space. Title may be empty (DefaultTitle).
type Create struct {
	ChatID        uuid.UUID
	SpaceID       uuid.UUID
	Access        Access
	Title         string
	PersonalOwner *uuid.UUID
}

// Rename asks for a new title. ExpectedVersion, when > 0, must equal the chat's version.
type Rename struct {
	Access          Access
	ExpectedVersion int64
	Title           string
}

// Delete asks to delete the chat.
type Delete struct {
	Access          Access
	ExpectedVersion int64
}

// Post asks to add a user's message; with Reply set, an assistant reply to it starts at once.
// Files says, for each file part's id, the file as the author may read it (absent: not readable).
type Post struct {
	Access          Access
	ExpectedVersion int64
	MessageID       uuid.UUID
	Author          uuid.UUID
	Role            string
	Parts           []Part
	Files           map[uuid.UUID]FileRef
	Reply           *StartReply
}

// FileRef is what a message keeps of a file it refers to.
type FileRef struct {
	Name, MediaType string
}

// StartReply asks for an assistant reply with a new message id, by a model.
type StartReply struct {
	MessageID uuid.UUID
	Model     string
}

// AppendText adds a chunk to the reply being written. Offset must be the reply's current offset.
type AppendText struct {
	MessageID       uuid.UUID
	Offset          int64
	Reasoning, Text string
}

// CallTool records a tool call of the reply being written.
type CallTool struct {
	MessageID        uuid.UUID
	ToolCallID, Name string
	Input            string
}

// ToolResult records a tool result of the reply being written.
type ToolResult struct {
	MessageID        uuid.UUID
	ToolCallID, Name string
	Output           string
}

// Complete ends the reply being written.
type Complete struct {
	MessageID    uuid.UUID
	FinishReason string
}

// Fail ends the reply being written as failed.
type Fail struct {
	MessageID uuid.UUID
	Reason    string
}

// Cancel asks to stop a reply being written.
type Cancel struct {
	Access    Access
	Actor     uuid.UUID
	MessageID uuid.UUID
}

func validateTitle(v domain.Validation, title string) {
	if msg := domain.CheckDisplayText(title, MaxTitleLength); msg != "" {
		v.Add("title", msg)
	}
}

func checkText(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.ContainsRune(s, 0):
		return "must not contain NUL characters"
	}
	return ""
}

// ValidateParts checks a user's message parts and returns them as stored (file parts carrying the
// file's name and media type). Unknown or assistant-only part types are CodeInvalid with the part
// named in the details; a file part whose file is not in files is CodeNotFound.
func ValidateParts(parts []Part, files map[uuid.UUID]FileRef) ([]Part, error) {
	v := domain.Validation{}
	switch {
	case len(parts) == 0:
		v.Add("parts", "at least one part is required")
	case len(parts) > MaxParts:
		v.Add("parts", fmt.Sprintf("at most %d parts are allowed", MaxParts))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	out := make([]Part, len(parts))
	total, hasContent := 0, false
	for i, p := range parts {
		field := fmt.Sprintf("parts[%d]", i)
		switch p.Type {
		case PartText:
			if msg := checkText(p.Text); msg != "" {
				v.Add(field+".text", msg)
			}
			if p.FileID != nil || p.ToolCallID != "" || p.ToolName != "" || p.Input != "" || p.Output != "" || p.Filename != "" || p.MediaType != "" {
				v.Add(field, "a text part has only type and text")
			}
			if strings.TrimSpace(p.Text) != "" {
				hasContent = true
			}
			total += len(p.Text)
			out[i] = Part{Type: PartText, Text: p.Text}
		case PartFile:
			if p.FileID == nil || *p.FileID == uuid.Nil {
				v.Add(field+".file_id", "is required")
				continue
			}
			if p.Text != "" || p.ToolCallID != "" || p.ToolName != "" || p.Input != "" || p.Output != "" {
				v.Add(field, "a file part has only type and file_id")
				continue
			}
			f, ok := files[*p.FileID]
			if !ok {
				return nil, &domain.Error{Code: domain.CodeNotFound, Message: fmt.Sprintf("file %s not found", *p.FileID),
					Details: map[string]string{field + ".file_id": "no such file, or the author may not read it"}}
			}
			id := *p.FileID
			out[i] = Part{Type: PartFile, FileID: &id, Filename: f.Name, MediaType: f.MediaType}
			hasContent = true
		case PartReasoning, PartToolCall, PartToolResult:
			v.Add(field+".type", fmt.Sprintf("%q parts are written by the assistant only; a user message has text and file parts", p.Type))
		case "":
			v.Add(field+".type", "is required (text or file)")
		default:
			v.Add(field+".type", fmt.Sprintf("unknown part type %q; known: text, reasoning, file, tool-call, tool-result", p.Type))
		}
	}
	if total > MaxMessageBytes {
		v.Add("parts", fmt.Sprintf("the text of a message must be at most %d bytes", MaxMessageBytes))
	}
	if len(v) == 0 && !hasContent {
		v.Add("parts", "the message is empty: give some text or a file")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Decide returns the events a command causes in state, or a *domain.Error: CodeInvalid for broken
// fields, CodeNotFound when the chat (or its space, for the actor; or a message) does not exist,
// CodeForbidden when the actor may read the space but not write in it, CodeVersionConflict when
// ExpectedVersion is stale, CodeConflict for a second create of the same id, a post while a reply
// is being written, or a change to a reply that is no longer being written.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case Create:
		if s.Version > 0 {
			return nil, domain.Errorf(domain.CodeConflict, "chat %s already exists", c.ChatID)
		}
		if err := authorize(c.Access); err != nil {
			return nil, err
		}
		title := strings.TrimSpace(c.Title)
		if c.Title == "" {
			title = DefaultTitle
		} else {
			v := domain.Validation{}
			validateTitle(v, c.Title)
			if err := v.Err(); err != nil {
				return nil, err
			}
		}
		return []domain.Event{Created{ChatID: c.ChatID, SpaceID: c.SpaceID, Title: title, PersonalOwner: c.PersonalOwner, CreatedAt: now}}, nil
	case Rename:
		if err := s.authorize(c.Access, c.ExpectedVersion); err != nil {
			return nil, err
		}
		v := domain.Validation{}
		validateTitle(v, c.Title)
		if err := v.Err(); err != nil {
			return nil, err
		}
		title := strings.TrimSpace(c.Title)
		if title == s.Title {
			return nil, nil
		}
		return []domain.Event{Renamed{ChatID: s.ID, Title: title, PersonalOwner: s.PersonalOwner, RenamedAt: now}}, nil
	case Delete:
		if err := s.authorize(c.Access, c.ExpectedVersion); err != nil {
			return nil, err
		}
		return []domain.Event{Deleted{ChatID: s.ID, DeletedAt: now}}, nil
	case Post:
		if err := s.authorize(c.Access, c.ExpectedVersion); err != nil {
			return nil, err
		}
		if c.Role != RoleUser {
			return nil, domain.Validation{"role": `must be "user": assistant messages are written by the assistant`}.Err()
		}
		parts, err := ValidateParts(c.Parts, c.Files)
		if err != nil {
			return nil, err
		}
		if s.Streaming != nil {
			return nil, domain.Errorf(domain.CodeConflict, "the assistant is still writing message %s; wait for it or cancel it", s.Streaming.MessageID)
		}
		if _, dup := s.Messages[c.MessageID]; dup {
			return nil, domain.Errorf(domain.CodeConflict, "message %s already exists", c.MessageID)
		}
		evs := []domain.Event{MessagePosted{ChatID: s.ID, MessageID: c.MessageID, Role: RoleUser, Parts: parts, AuthorID: c.Author,
			PersonalOwner: s.PersonalOwner, PostedAt: now}}
		if c.Reply != nil {
			evs = append(evs, ReplyStarted{ChatID: s.ID, MessageID: c.Reply.MessageID, ReplyTo: c.MessageID, Model: c.Reply.Model, StartedAt: now})
		}
		return evs, nil
	case AppendText:
		if err := s.writing(c.MessageID); err != nil {
			return nil, err
		}
		if c.Offset != s.Streaming.Offset {
			return nil, domain.Errorf(domain.CodeConflict, "reply %s is at offset %d, not %d", c.MessageID, s.Streaming.Offset, c.Offset)
		}
		if msg := checkText(c.Text + c.Reasoning); msg != "" {
			return nil, domain.Validation{"text": msg}.Err()
		}
		if c.Text == "" && c.Reasoning == "" {
			return nil, nil
		}
		return []domain.Event{ReplyTextAppended{ChatID: s.ID, MessageID: c.MessageID, Offset: c.Offset, Reasoning: c.Reasoning, Text: c.Text,
			PersonalOwner: s.PersonalOwner, AppendedAt: now}}, nil
	case CallTool:
		if err := s.writing(c.MessageID); err != nil {
			return nil, err
		}
		if err := checkTool(c.ToolCallID, c.Name, c.Input, "input"); err != nil {
			return nil, err
		}
		return []domain.Event{ReplyToolCalled{ChatID: s.ID, MessageID: c.MessageID, ToolCallID: c.ToolCallID, ToolName: c.Name, Input: c.Input,
			PersonalOwner: s.PersonalOwner, CalledAt: now}}, nil
	case ToolResult:
		if err := s.writing(c.MessageID); err != nil {
			return nil, err
		}
		if err := checkTool(c.ToolCallID, c.Name, c.Output, "output"); err != nil {
			return nil, err
		}
		return []domain.Event{ReplyToolResulted{ChatID: s.ID, MessageID: c.MessageID, ToolCallID: c.ToolCallID, ToolName: c.Name, Output: c.Output,
			PersonalOwner: s.PersonalOwner, ResultedAt: now}}, nil
	case Complete:
		if err := s.writing(c.MessageID); err != nil {
			return nil, err
		}
		return []domain.Event{ReplyCompleted{ChatID: s.ID, MessageID: c.MessageID, FinishReason: c.FinishReason, CompletedAt: now}}, nil
	case Fail:
		if err := s.writing(c.MessageID); err != nil {
			return nil, err
		}
		reason := strings.ToValidUTF8(strings.TrimSpace(strings.ReplaceAll(c.Reason, "\x00", "")), "?")
		if reason == "" {
			reason = "unknown error"
		}
		if r := []rune(reason); len(r) > MaxReasonLength {
			reason = string(r[:MaxReasonLength]) + "…"
		}
		return []domain.Event{ReplyFailed{ChatID: s.ID, MessageID: c.MessageID, Reason: reason, FailedAt: now}}, nil
	case Cancel:
		if err := s.authorize(c.Access, 0); err != nil {
			return nil, err
		}
		m, ok := s.Messages[c.MessageID]
		if !ok {
			return nil, domain.Errorf(domain.CodeNotFound, "message not found")
		}
		if m.Role != RoleAssistant {
			return nil, domain.Errorf(domain.CodeConflict, "message %s is not an assistant reply", c.MessageID)
		}
		if m.Status != StatusStreaming {
			return nil, domain.Errorf(domain.CodeConflict, "reply %s is no longer being written (it is %s)", c.MessageID, m.Status)
		}
		return []domain.Event{ReplyCancelled{ChatID: s.ID, MessageID: c.MessageID, CancelledBy: c.Actor, CancelledAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "chat: unknown command %T", cmd)
	}
}

func checkTool(id, name, payload, field string) error {
	v := domain.Validation{}
	if id == "" || len(id) > 200 {
		v.Add("tool_call_id", "must be 1 to 200 characters")
	}
	if name == "" || len(name) > 100 {
		v.Add("tool_name", "must be 1 to 100 characters")
	}
	if len(payload) > MaxToolPayloadBytes {
		v.Add(field, fmt.Sprintf("must be at most %d bytes", MaxToolPayloadBytes))
	} else if !json.Valid([]byte(payload)) {
		v.Add(field, "must be JSON")
	}
	return v.Err()
}

func authorize(a Access) error {
	switch {
	case !a.Read:
		return domain.Errorf(domain.CodeNotFound, "space not found")
	case !a.Write:
		return domain.Errorf(domain.CodeForbidden, "only the space's editors and managers write in its chats")
	}
	return nil
}

func (s State) authorize(a Access, expected int64) error {
	if !s.Exists() || !a.Read {
		return domain.Errorf(domain.CodeNotFound, "chat not found")
	}
	if err := authorize(a); err != nil {
		return err
	}
	if expected > 0 && expected != s.Version {
		return domain.Errorf(domain.CodeVersionConflict, "chat is at version %d, not %d", s.Version, expected)
	}
	return nil
}

// writing checks that id is the reply being written.
func (s State) writing(id uuid.UUID) error {
	if !s.Exists() {
		return domain.Errorf(domain.CodeNotFound, "chat not found")
	}
	if s.Streaming == nil || s.Streaming.MessageID != id {
		st := "unknown"
		if m, ok := s.Messages[id]; ok {
			st = m.Status
		}
		return domain.Errorf(domain.CodeConflict, "reply %s is not being written (it is %s)", id, st)
	}
	return nil
}

func (s State) withMessage(id uuid.UUID, m MessageState) State {
	msgs := maps.Clone(s.Messages)
	if msgs == nil {
		msgs = map[uuid.UUID]MessageState{}
	}
	msgs[id] = m
	s.Messages = msgs
	return s
}

// finish ends the reply being written with status.
func (s State) finish(id uuid.UUID, status string) State {
	if m, ok := s.Messages[id]; ok {
		m.Status = status
		s = s.withMessage(id, m)
	}
	if s.Streaming != nil && s.Streaming.MessageID == id {
		s.Streaming = nil
	}
	return s
}

// progress records a change of the reply being written.
func (s State) progress(id uuid.UUID, at time.Time, grow int64) State {
	if s.Streaming != nil && s.Streaming.MessageID == id {
		r := *s.Streaming
		r.Offset += grow
		r.LastProgress = at
		s.Streaming = &r
	}
	return s
}

// Evolve applies one event to state. It never fails: unknown events only advance the version.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Created:
		s.ID, s.SpaceID, s.Title, s.PersonalOwner = e.ChatID, e.SpaceID, e.Title, e.PersonalOwner
		s.CreatedAt, s.UpdatedAt = e.CreatedAt, e.CreatedAt
	case Renamed:
		s.Title, s.UpdatedAt = e.Title, e.RenamedAt
	case Deleted:
		s.Deleted, s.UpdatedAt, s.Streaming = true, e.DeletedAt, nil
	case MessagePosted:
		s = s.withMessage(e.MessageID, MessageState{Role: e.Role, Status: StatusComplete})
		s.UpdatedAt = e.PostedAt
	case ReplyStarted:
		s = s.withMessage(e.MessageID, MessageState{Role: RoleAssistant, Status: StatusStreaming})
		s.Streaming = &Reply{MessageID: e.MessageID, ReplyTo: e.ReplyTo, LastProgress: e.StartedAt}
		s.UpdatedAt = e.StartedAt
	case ReplyTextAppended:
		s = s.progress(e.MessageID, e.AppendedAt, int64(len(e.Reasoning)+len(e.Text)))
	case ReplyToolCalled:
		s = s.progress(e.MessageID, e.CalledAt, 0)
	case ReplyToolResulted:
		s = s.progress(e.MessageID, e.ResultedAt, 0)
	case ReplyCompleted:
		s = s.finish(e.MessageID, StatusComplete)
		s.UpdatedAt = e.CompletedAt
	case ReplyFailed:
		s = s.finish(e.MessageID, StatusFailed)
		s.UpdatedAt = e.FailedAt
	case ReplyCancelled:
		s = s.finish(e.MessageID, StatusCancelled)
		s.UpdatedAt = e.CancelledAt
	}
	return s
}

// Delta is a piece of a reply as it is produced, before it is persisted in a chunk: Offset is where
// it starts in the reply's emitted content (the offsets of ReplyTextAppended), Reasoning says whether
// it is reasoning rather than answer text.
type Delta struct {
	MessageID uuid.UUID
	Offset    int64
	Reasoning bool
	Text      string
}

// End is the offset just after the delta.
func (d Delta) End() int64 { return d.Offset + int64(len(d.Text)) }
