package chat_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
)

var (
	now      = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	writer   = chat.Access{Read: true, Write: true}
	reader   = chat.Access{Read: true}
	outsider = chat.Access{}
)

func fold(s chat.State, evs ...domain.Event) chat.State {
	for _, e := range evs {
		s = chat.Evolve(s, e)
	}
	return s
}

func existing() chat.State {
	return fold(chat.State{}, chat.Created{ChatID: uuid.New(), SpaceID: uuid.New(), Title: "T", CreatedAt: now})
}

// streaming returns a chat with a reply being written and the reply's id.
func streaming() (chat.State, uuid.UUID) {
	s := existing()
	msg, reply := uuid.New(), uuid.New()
	return fold(s, chat.MessagePosted{ChatID: s.ID, MessageID: msg, Role: chat.RoleUser, Parts: []chat.Part{{Type: "text", Text: "hi"}}},
		chat.ReplyStarted{ChatID: s.ID, MessageID: reply, ReplyTo: msg, StartedAt: now}), reply
}

func text(s string) []chat.Part { return []chat.Part{{Type: chat.PartText, Text: s}} }

func TestDecide(t *testing.T) {
	id, sp, file := uuid.New(), uuid.New(), uuid.New()
	live, reply := streaming()
	done := fold(live, chat.ReplyCompleted{MessageID: reply})
	files := map[uuid.UUID]chat.FileRef{file: {Name: "a.md", MediaType: "text/markdown"}}
	tests := []struct {
		name  string
		state chat.State
		cmd   any
		code  domain.Code
		field string
		n     int
	}{
		{"create", chat.State{}, chat.Create{ChatID: id, SpaceID: sp, Access: writer, Title: " Plan "}, "", "", 1},
		{"create without a title", chat.State{}, chat.Create{ChatID: id, SpaceID: sp, Access: writer}, "", "", 1},
		{"create as a viewer", chat.State{}, chat.Create{ChatID: id, SpaceID: sp, Access: reader}, domain.CodeForbidden, "", 0},
		{"create in a space one cannot read", chat.State{}, chat.Create{ChatID: id, SpaceID: sp, Access: outsider}, domain.CodeNotFound, "", 0},
		{"blank title", chat.State{}, chat.Create{ChatID: id, SpaceID: sp, Access: writer, Title: "  "}, domain.CodeInvalid, "title", 0},
		{"long title", chat.State{}, chat.Create{ChatID: id, SpaceID: sp, Access: writer, Title: strings.Repeat("x", 201)}, domain.CodeInvalid, "title", 0},
		{"create twice", existing(), chat.Create{ChatID: id, SpaceID: sp, Access: writer}, domain.CodeConflict, "", 0},
		{"rename", existing(), chat.Rename{Access: writer, Title: "U"}, "", "", 1},
		{"rename to the same title", existing(), chat.Rename{Access: writer, Title: "T"}, "", "", 0},
		{"rename with a stale version", existing(), chat.Rename{Access: writer, ExpectedVersion: 2, Title: "U"}, domain.CodeVersionConflict, "", 0},
		{"rename as a viewer", existing(), chat.Rename{Access: reader, Title: "U"}, domain.CodeForbidden, "", 0},
		{"rename unseen", existing(), chat.Rename{Access: outsider, Title: "U"}, domain.CodeNotFound, "", 0},
		{"delete", existing(), chat.Delete{Access: writer}, "", "", 1},
		{"delete a missing chat", chat.State{}, chat.Delete{Access: writer}, domain.CodeNotFound, "", 0},
		{"post", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: text("hello")}, "", "", 1},
		{"post starting a reply", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: text("hello"), Reply: &chat.StartReply{MessageID: uuid.New(), Model: "m"}}, "", "", 2},
		{"post a file", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: []chat.Part{{Type: "file", FileID: &file}}, Files: files}, "", "", 1},
		{"post an unreadable file", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: []chat.Part{{Type: "file", FileID: &sp}}, Files: files}, domain.CodeNotFound, "", 0},
		{"post as the assistant", existing(), chat.Post{Access: writer, MessageID: id, Role: "assistant", Parts: text("x")}, domain.CodeInvalid, "role", 0},
		{"post an unknown part", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: []chat.Part{{Type: "image"}}}, domain.CodeInvalid, "parts[0].type", 0},
		{"post a tool call", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: []chat.Part{{Type: "tool-call"}}}, domain.CodeInvalid, "parts[0].type", 0},
		{"post nothing", existing(), chat.Post{Access: writer, MessageID: id, Role: "user"}, domain.CodeInvalid, "parts", 0},
		{"post blank text", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: text("  ")}, domain.CodeInvalid, "parts", 0},
		{"post NUL", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: text("a\x00")}, domain.CodeInvalid, "parts[0].text", 0},
		{"post too much", existing(), chat.Post{Access: writer, MessageID: id, Role: "user", Parts: text(strings.Repeat("x", chat.MaxMessageBytes+1))}, domain.CodeInvalid, "parts", 0},
		{"post as a viewer", existing(), chat.Post{Access: reader, MessageID: id, Role: "user", Parts: text("x")}, domain.CodeForbidden, "", 0},
		{"post while a reply is written", live, chat.Post{Access: writer, MessageID: id, Role: "user", Parts: text("x")}, domain.CodeConflict, "", 0},
		{"post after the reply", done, chat.Post{Access: writer, MessageID: id, Role: "user", Parts: text("x")}, "", "", 1},
		{"append text", live, chat.AppendText{MessageID: reply, Text: "Hel"}, "", "", 1},
		{"append at a wrong offset", live, chat.AppendText{MessageID: reply, Offset: 3, Text: "x"}, domain.CodeConflict, "", 0},
		{"append after completion", done, chat.AppendText{MessageID: reply, Text: "x"}, domain.CodeConflict, "", 0},
		{"call a tool", live, chat.CallTool{MessageID: reply, ToolCallID: "c1", Name: "search", Input: `{"query":"x"}`}, "", "", 1},
		{"call a tool with bad JSON", live, chat.CallTool{MessageID: reply, ToolCallID: "c1", Name: "search", Input: `{`}, domain.CodeInvalid, "input", 0},
		{"complete", live, chat.Complete{MessageID: reply}, "", "", 1},
		{"complete twice", done, chat.Complete{MessageID: reply}, domain.CodeConflict, "", 0},
		{"fail", live, chat.Fail{MessageID: reply, Reason: "boom"}, "", "", 1},
		{"cancel", live, chat.Cancel{Access: writer, MessageID: reply}, "", "", 1},
		{"cancel as a viewer", live, chat.Cancel{Access: reader, MessageID: reply}, domain.CodeForbidden, "", 0},
		{"cancel a finished reply", done, chat.Cancel{Access: writer, MessageID: reply}, domain.CodeConflict, "", 0},
		{"cancel an unknown message", live, chat.Cancel{Access: writer, MessageID: id}, domain.CodeNotFound, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := chat.Decide(tt.state, tt.cmd, now)
			if got := domain.ErrorCode(err); got != tt.code {
				t.Fatalf("Decide error = %v, want code %q", err, tt.code)
			}
			if tt.field != "" {
				var de *domain.Error
				if !errors.As(err, &de) || de.Details[tt.field] == "" {
					t.Fatalf("Decide error = %v, want details naming %q", err, tt.field)
				}
			}
			if len(evs) != tt.n {
				t.Fatalf("Decide gave %d events, want %d: %v", len(evs), tt.n, evs)
			}
		})
	}
}

func TestEvolveFollowsAReply(t *testing.T) {
	s, reply := streaming()
	if s.Streaming == nil || s.Streaming.MessageID != reply {
		t.Fatalf("Streaming = %+v, want reply %s", s.Streaming, reply)
	}
	s = fold(s, chat.ReplyTextAppended{MessageID: reply, Text: "Hello", Reasoning: "hm"})
	if s.Streaming.Offset != 7 {
		t.Errorf("Offset = %d, want 7", s.Streaming.Offset)
	}
	s = fold(s, chat.ReplyCancelled{MessageID: reply})
	if s.Streaming != nil || s.Messages[reply].Status != chat.StatusCancelled {
		t.Errorf("after cancel: Streaming = %+v, status %q", s.Streaming, s.Messages[reply].Status)
	}
}

// Sealing personal data must never write into the caller's parts.
func TestPersonalDataCopiesParts(t *testing.T) {
	owner := uuid.New()
	parts := text("secret")
	e := chat.MessagePosted{Parts: parts, PersonalOwner: &owner}
	subject, fields := e.PersonalData()
	if subject != owner || len(fields) != 1 {
		t.Fatalf("PersonalData = %s, %d fields", subject, len(fields))
	}
	*fields[0] = "sealed"
	if parts[0].Text != "secret" || e.Parts[0].Text != "sealed" {
		t.Errorf("caller's part = %q, payload's = %q", parts[0].Text, e.Parts[0].Text)
	}
	org := chat.MessagePosted{Parts: text("x")}
	if _, f := org.PersonalData(); len(f) != 0 {
		t.Errorf("a chat outside personal spaces has %d personal fields", len(f))
	}
}
