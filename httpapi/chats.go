package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// Assistant writes assistant replies in chats. It is optional: without one (or with an empty
// Model) posting a message starts no reply and the API says no assistant is configured.
type Assistant interface {
	// Model names the model that writes replies; "" when none is configured.
	Model() string
	// Start begins writing reply replyID of chat chatID in the background, on behalf of viewer (whose
	// permissions bound what the assistant may look up).
	Start(chatID, replyID, viewer uuid.UUID)
	// Stop ends the writing of a reply in this process at once (after a cancel or a deletion);
	// uuid.Nil for whatever reply of the chat is being written.
	Stop(chatID, replyID uuid.UUID)
	// Subscribe returns the deltas of the reply being written in chatID by this process (all emitted
	// so far) and a channel of those to come, closed when the reply ends or the subscriber falls
	// behind (it may subscribe again: the snapshot covers everything). stop releases it.
	Subscribe(chatID uuid.UUID) (snapshot []chat.Delta, live <-chan chat.Delta, stop func())
}

type assistantDTO struct {
	Configured bool   `json:"configured"`
	Model      string `json:"model,omitempty"`
}

func (s *Server) assistantInfo() assistantDTO {
	if s.deps.Assistant == nil || s.deps.Assistant.Model() == "" {
		return assistantDTO{}
	}
	return assistantDTO{Configured: true, Model: s.deps.Assistant.Model()}
}

type chatDTO struct {
	ID            uuid.UUID               `json:"id"`
	SpaceID       uuid.UUID               `json:"space_id"`
	Title         string                  `json:"title"`
	Version       int64                   `json:"version"`
	CreatedBy     *uuid.UUID              `json:"created_by,omitempty"`
	UpdatedBy     *uuid.UUID              `json:"updated_by,omitempty"`
	CreatedAt     time.Time               `json:"created_at"`
	UpdatedAt     time.Time               `json:"updated_at"`
	MessageCount  *int                    `json:"message_count,omitempty"`
	LastMessageAt *time.Time              `json:"last_message_at,omitempty"`
	Assistant     *assistantDTO           `json:"assistant,omitempty"`
	IndexState    *projections.IndexState `json:"index_state,omitempty"`
	Position      string                  `json:"position,omitempty"`
}

func chatFromView(v projections.ChatView) chatDTO {
	n := v.MessageCount
	return chatDTO{ID: v.ID, SpaceID: v.SpaceID, Title: v.Title, Version: v.Version, CreatedBy: v.CreatedBy, UpdatedBy: v.UpdatedBy,
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, MessageCount: &n, LastMessageAt: v.LastMessageAt, IndexState: v.IndexState}
}

func chatFromState(st chat.State) chatDTO {
	return chatDTO{ID: st.ID, SpaceID: st.SpaceID, Title: st.Title, Version: st.Version, CreatedAt: st.CreatedAt.UTC(), UpdatedAt: st.UpdatedAt.UTC()}
}

func (s *Server) chatCommandResponse(c echo.Context, status int, r commands.ChatResult) error {
	dto := chatFromState(r.Chat)
	a := s.assistantInfo()
	dto.Assistant = &a
	dto.Position = withPosition(c, r.Position)
	setETag(c, r.Chat.Version)
	return c.JSON(status, dto)
}

func (s *Server) createChat(c echo.Context) error {
	spaceID, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	var in struct {
		Title *string `json:"title"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	title := ""
	if in.Title != nil {
		if title = *in.Title; title == "" {
			return domain.Validation{"title": "must not be empty (leave it out for the default title)"}.Err()
		}
	}
	r, err := s.deps.Commands.CreateChat(c.Request().Context(), cc, spaceID, title)
	if err != nil {
		return err
	}
	return s.chatCommandResponse(c, http.StatusCreated, r)
}

func (s *Server) updateChat(c echo.Context) error {
	id, err := pathUUID(c, "chat_id")
	if err != nil {
		return err
	}
	var in struct {
		Title *string `json:"title"`
	}
	cc, expected, err := readCommand(c, &in, true)
	if err != nil {
		return err
	}
	if in.Title == nil {
		return domain.Validation{"title": "is required"}.Err()
	}
	r, err := s.deps.Commands.RenameChat(c.Request().Context(), cc, id, expected, *in.Title)
	if err != nil {
		return err
	}
	return s.chatCommandResponse(c, http.StatusOK, r)
}

func (s *Server) deleteChat(c echo.Context) error {
	return s.pathCommand(c, true, []string{"chat_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, expected int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.DeleteChat(ctx, cc, ids[0], expected)
		if err == nil && s.deps.Assistant != nil {
			s.deps.Assistant.Stop(ids[0], uuid.Nil)
		}
		return r.Position, err
	})
}

func (s *Server) getChat(c echo.Context) error {
	if asOf := c.QueryParam("as_of"); asOf != "" {
		id, err := pathUUID(c, "chat_id")
		if err != nil {
			return err
		}
		return stateAsOf(s, c, id, asOf, "chat", func(ctx context.Context) error {
			_, _, err := s.deps.Commands.ChatFor(ctx, userID(c), id)
			return err
		}, chat.Evolve, chat.State.Exists, func(st chat.State) int64 { return st.Version }, chatFromState)
	}
	return getOne(s, c, "chat_id", []string{projections.ChatsProjector, projections.PermissionsProjector}, s.deps.Queries.Chat,
		func(v projections.ChatView) int64 { return v.Version }, func(v projections.ChatView) chatDTO {
			dto := chatFromView(v)
			a := s.assistantInfo()
			dto.Assistant = &a
			return dto
		})
}

func (s *Server) listChats(c echo.Context) error {
	return listUnder(s, c, "space_id", []string{projections.ChatsProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.ChatView, *string, error) {
			page, err := s.deps.Queries.ChatsOf(ctx, viewer, id, cursor, limit)
			return page.Items, page.NextCursor, err
		}, chatFromView)
}

func (s *Server) listChatMessages(c echo.Context) error {
	return listUnder(s, c, "chat_id", []string{projections.ChatsProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.ChatMessageView, *string, error) {
			page, err := s.deps.Queries.ChatMessages(ctx, viewer, id, cursor, limit)
			return page.Items, page.NextCursor, err
		}, same[projections.ChatMessageView])
}

func (s *Server) getChatMessage(c echo.Context) error {
	chatID, err := pathUUID(c, "chat_id")
	if err != nil {
		return err
	}
	id, err := pathUUID(c, "message_id")
	if err != nil {
		return err
	}
	if err := s.consistent(c, projections.ChatsProjector, projections.PermissionsProjector); err != nil {
		return err
	}
	v, err := s.deps.Queries.ChatMessage(c.Request().Context(), userID(c), chatID, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// postedDTO is the answer to a posted message: the message, the reply it started (if any), whether
// an assistant is configured, and the command's position.
type postedDTO struct {
	projections.ChatMessageView
	Reply     *replyRefDTO `json:"reply"`
	Assistant assistantDTO `json:"assistant"`
	Position  string       `json:"position"`
}

type replyRefDTO struct {
	ID     uuid.UUID `json:"id"`
	Status string    `json:"status"`
}

// decodeParts reads the parts of a posted message: each part's type first, then its fields strictly
// for the types a user may post. An unknown type is a field error (422) naming the part.
func decodeParts(raw []json.RawMessage) ([]chat.Part, error) {
	parts := make([]chat.Part, len(raw))
	v := domain.Validation{}
	for i, r := range raw {
		field := fmt.Sprintf("parts[%d]", i)
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(r, &head); err != nil {
			return nil, domain.Errorf(domain.CodeBadRequest, "malformed JSON: %s must be an object with a string type", field)
		}
		switch head.Type {
		case chat.PartText, chat.PartFile:
			var p struct {
				Type   string     `json:"type"`
				Text   *string    `json:"text"`
				FileID *uuid.UUID `json:"file_id"`
			}
			dec := json.NewDecoder(bytes.NewReader(r))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				return nil, domain.Errorf(domain.CodeBadRequest, "malformed JSON in %s: %s", field, jsonProblem(err))
			}
			if p.Type == chat.PartText && p.Text == nil {
				v.Add(field+".text", "is required")
			}
			if p.Type == chat.PartText && p.FileID != nil {
				v.Add(field+".file_id", "a text part has no file_id")
			}
			if p.Type == chat.PartFile && p.Text != nil {
				v.Add(field+".text", "a file part has no text")
			}
			parts[i] = chat.Part{Type: p.Type, FileID: p.FileID}
			if p.Text != nil {
				parts[i].Text = *p.Text
			}
		default:
			// Validated (and refused with the reason) by the domain.
			parts[i] = chat.Part{Type: head.Type}
		}
	}
	return parts, v.Err()
}

func (s *Server) postChatMessage(c echo.Context) error {
	chatID, err := pathUUID(c, "chat_id")
	if err != nil {
		return err
	}
	var in struct {
		Role  *string           `json:"role"`
		Parts []json.RawMessage `json:"parts"`
	}
	cc, expected, err := readCommand(c, &in, true)
	if err != nil {
		return err
	}
	if in.Role == nil {
		return domain.Validation{"role": `is required ("user")`}.Err()
	}
	parts, err := decodeParts(in.Parts)
	if err != nil {
		return err
	}
	info := s.assistantInfo()
	ctx := c.Request().Context()
	r, err := s.deps.Commands.PostMessage(ctx, cc, chatID, expected, *in.Role, parts, info.Model)
	if err != nil {
		return err
	}
	// The message's event is the last of its append, or the one before the reply's start.
	seq := r.Chat.Version
	out := postedDTO{Assistant: info}
	if r.ReplyID != nil {
		out.Reply = &replyRefDTO{ID: *r.ReplyID, Status: chat.StatusStreaming}
		if st, ok := r.Chat.Messages[*r.ReplyID]; ok {
			out.Reply.Status = st.Status
		}
		seq--
		// Only a fresh post starts the writer; a replayed one finds its reply already under way
		// (or finished, or failed as interrupted by the sweeper).
		if len(r.Events) > 0 && s.deps.Assistant != nil {
			s.deps.Assistant.Start(chatID, *r.ReplyID, cc.Actor)
		}
	}
	m := r.Message
	out.ChatMessageView = projections.ChatMessageView{ID: m.MessageID, ChatID: chatID, Seq: seq, Role: m.Role, Status: chat.StatusComplete,
		Parts: projections.PartsFromDomain(m.Parts), AuthorID: &m.AuthorID, CreatedAt: m.PostedAt.UTC(), UpdatedAt: m.PostedAt.UTC()}
	completed := m.PostedAt.UTC()
	out.CompletedAt = &completed
	out.Position = withPosition(c, r.Position)
	setETag(c, r.Chat.Version)
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) cancelChatReply(c echo.Context) error {
	return s.pathCommand(c, false, []string{"chat_id", "message_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, _ int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.CancelReply(ctx, cc, ids[0], ids[1])
		if err == nil && s.deps.Assistant != nil {
			s.deps.Assistant.Stop(ids[0], ids[1])
		}
		return r.Position, err
	})
}

// chatHistory lists the events of a chat's stream for whoever may read the chat now.
func (s *Server) chatHistory(c echo.Context) error {
	return s.streamHistory(c, "chat_id", func(ctx context.Context, id uuid.UUID) error {
		_, _, err := s.deps.Commands.ChatFor(ctx, userID(c), id)
		return err
	})
}
