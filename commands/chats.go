package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/eventstore"
)

// ChatResult is a chat after a command, with the position of the command's last event.
type ChatResult struct {
	Chat     chat.State
	Tenant   uuid.UUID
	Position eventstore.Position
	Events   []domain.Event // what the command appended (none for a replayed result)
}

// PostResult is a posted message: the chat after it, the message as stored, and the id of the
// assistant reply it started (nil without one).
type PostResult struct {
	ChatResult
	Message chat.MessagePosted
	ReplyID *uuid.UUID
}

// loadChat folds a chat's stream (up to maxVersion; 0 for all) and returns its tenant too.
func (h *Handlers) loadChat(ctx context.Context, id uuid.UUID, maxVersion int64) (chat.State, uuid.UUID, eventstore.Position, error) {
	var st chat.State
	var tenant uuid.UUID
	var pos eventstore.Position
	recs, err := h.store.ReadStream(ctx, id, maxVersion)
	if err != nil {
		return st, tenant, pos, err
	}
	for _, r := range recs {
		if r.StreamType != chat.StreamType {
			return chat.State{}, tenant, pos, nil
		}
		st = chat.Evolve(st, r.Event)
		pos = r.Position
		if r.TenantID != nil {
			tenant = *r.TenantID
		}
	}
	return st, tenant, pos, nil
}

// Chat loads a chat aggregate (up to maxVersion; 0 for its latest state) and its tenant.
func (h *Handlers) Chat(ctx context.Context, id uuid.UUID, maxVersion int64) (chat.State, uuid.UUID, error) {
	st, tenant, _, err := h.loadChat(ctx, id, maxVersion)
	return st, tenant, err
}

// chatAccess says what actor may do in a space's chats.
func (h *Handlers) chatAccess(ctx context.Context, actor, spaceID uuid.UUID) (chat.Access, uuid.UUID, *uuid.UUID, error) {
	sp, a, err := h.SpaceAccess(ctx, actor, spaceID)
	if err != nil {
		return chat.Access{}, uuid.Nil, nil, err
	}
	if !sp.Exists() {
		return chat.Access{}, uuid.Nil, nil, nil
	}
	var personal *uuid.UUID
	if sp.OrgID == nil && sp.OwnerUserID != nil {
		owner := *sp.OwnerUserID
		personal = &owner
	}
	return chat.Access{Read: a.Read, Write: a.Write}, sp.Owner(), personal, nil
}

// ChatFor loads a chat and what viewer may do with it (through its space), for reads that go to the
// log (history, as_of, the stream). A chat viewer may not read is CodeNotFound.
func (h *Handlers) ChatFor(ctx context.Context, viewer, id uuid.UUID) (chat.State, chat.Access, error) {
	st, _, err := h.Chat(ctx, id, 0)
	if err != nil {
		return st, chat.Access{}, err
	}
	if st.Version == 0 {
		return st, chat.Access{}, domain.Errorf(domain.CodeNotFound, "chat not found")
	}
	access, _, _, err := h.chatAccess(ctx, viewer, st.SpaceID)
	if err == nil && !access.Read {
		err = domain.Errorf(domain.CodeNotFound, "chat not found")
	}
	return st, access, err
}

// CreateChat creates a chat in a space (its managers and editors). Errors: CodeInvalid, CodeNotFound
// (no such space for the actor), CodeForbidden (a viewer).
func (h *Handlers) CreateChat(ctx context.Context, cc Context, spaceID uuid.UUID, title string) (ChatResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.chatReplay(ctx, prev, err)
	}
	access, tenant, personal, err := h.chatAccess(ctx, cc.Actor, spaceID)
	if err != nil {
		return ChatResult{}, err
	}
	id := uuid.Must(uuid.NewV7())
	evs, err := chat.Decide(chat.State{}, chat.Create{ChatID: id, SpaceID: spaceID, Access: access, Title: title, PersonalOwner: personal}, h.now())
	if err != nil {
		return ChatResult{}, err
	}
	res, prev, err := h.appendIdempotent(ctx, nil, cc, id, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: chat.StreamType, StreamID: id, TenantID: &tenant, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	})
	return h.chatOutcome(ctx, chat.State{}, tenant, evs, res, prev, err)
}

// RenameChat gives a chat a new title. Errors: CodeInvalid, CodeNotFound, CodeForbidden,
// CodeVersionConflict.
func (h *Handlers) RenameChat(ctx context.Context, cc Context, id uuid.UUID, expected int64, title string) (ChatResult, error) {
	res, _, err := h.changeChat(ctx, cc, id, expected, func(a chat.Access, _ chat.State) (any, error) {
		return chat.Rename{Access: a, ExpectedVersion: expected, Title: title}, nil
	})
	return res, err
}

// DeleteChat deletes a chat and its messages (a reply being written stops). Errors: CodeNotFound,
// CodeForbidden, CodeVersionConflict.
func (h *Handlers) DeleteChat(ctx context.Context, cc Context, id uuid.UUID, expected int64) (ChatResult, error) {
	res, _, err := h.changeChat(ctx, cc, id, expected, func(a chat.Access, _ chat.State) (any, error) {
		return chat.Delete{Access: a, ExpectedVersion: expected}, nil
	})
	return res, err
}

// PostMessage adds a user's message to a chat; with model != "" an assistant reply by that model
// starts in the same append. Errors: CodeInvalid (role, parts), CodeNotFound (chat, or a file part
// the actor may not read), CodeForbidden, CodeVersionConflict, CodeConflict (a reply is still being
// written).
func (h *Handlers) PostMessage(ctx context.Context, cc Context, chatID uuid.UUID, expected int64, role string, parts []chat.Part, model string) (PostResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.postReplay(ctx, prev, err)
	}
	msgID := uuid.Must(uuid.NewV7())
	var reply *chat.StartReply
	if model != "" {
		reply = &chat.StartReply{MessageID: uuid.Must(uuid.NewV7()), Model: model}
	}
	// Files are looked up once, before the decision: each must be readable by the author.
	files := map[uuid.UUID]chat.FileRef{}
	for _, p := range parts {
		if p.Type != chat.PartFile || p.FileID == nil {
			continue
		}
		if _, seen := files[*p.FileID]; seen {
			continue
		}
		f, err := h.FileFor(ctx, cc.Actor, *p.FileID)
		if err != nil && domain.ErrorCode(err) != domain.CodeNotFound {
			return PostResult{}, err
		}
		if err == nil && f.Exists() {
			files[*p.FileID] = chat.FileRef{Name: f.Name, MediaType: f.Current().ContentType}
		}
	}
	res, prevRes, err := h.changeChat(ctx, cc, chatID, expected, func(a chat.Access, _ chat.State) (any, error) {
		return chat.Post{Access: a, ExpectedVersion: expected, MessageID: msgID, Author: cc.Actor, Role: role, Parts: parts, Files: files, Reply: reply}, nil
	})
	if err != nil {
		return PostResult{}, err
	}
	if prevRes != nil {
		return h.postReplay(ctx, *prevRes, nil)
	}
	out := PostResult{ChatResult: res}
	for _, e := range res.Events {
		switch e := e.(type) {
		case chat.MessagePosted:
			out.Message = e
		case chat.ReplyStarted:
			id := e.MessageID
			out.ReplyID = &id
		}
	}
	if out.Message.MessageID != msgID {
		return PostResult{}, fmt.Errorf("post to chat %s appended no message", chatID)
	}
	return out, nil
}

// CancelReply stops a reply being written (the space's writers). Errors: CodeNotFound (chat or
// message), CodeForbidden, CodeConflict (the reply is not being written any more).
func (h *Handlers) CancelReply(ctx context.Context, cc Context, chatID, messageID uuid.UUID) (ChatResult, error) {
	res, _, err := h.changeChat(ctx, cc, chatID, 0, func(a chat.Access, _ chat.State) (any, error) {
		return chat.Cancel{Access: a, Actor: cc.Actor, MessageID: messageID}, nil
	})
	return res, err
}

// AdvanceReply appends what cmd (an AppendText, CallTool, ToolResult, Complete or Fail) decides on
// st, at st's version, without reloading: the writer of a reply holds the chat's state and moves it
// on. A concurrent change of the chat (a cancel, a deletion, a rename) is eventstore.ErrVersionConflict:
// the writer reloads (Chat) and decides again. Other errors as chat.Decide.
func (h *Handlers) AdvanceReply(ctx context.Context, st chat.State, tenant uuid.UUID, correlation string, cmd any) (chat.State, eventstore.Position, error) {
	evs, err := chat.Decide(st, cmd, h.now())
	if err != nil || len(evs) == 0 {
		return st, eventstore.Position{}, err
	}
	cid := uuid.Must(uuid.NewV7())
	md := Context{CorrelationID: correlation}.metadata(cid)
	res, err := h.store.Append(ctx, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: chat.StreamType, StreamID: st.ID, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}},
		Metadata: md,
	})
	if err != nil {
		return st, eventstore.Position{}, err
	}
	for _, e := range evs {
		st = chat.Evolve(st, e)
	}
	return st, res.Position, nil
}

// changeChat loads, decides and appends; without an expected version it retries a lost race a few
// times, as changeNote does. It returns the stored result of an earlier identical idempotent command
// as prev.
func (h *Handlers) changeChat(ctx context.Context, cc Context, id uuid.UUID, expected int64, command func(chat.Access, chat.State) (any, error)) (ChatResult, *eventstore.IdempotentResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		if err != nil {
			return ChatResult{}, nil, err
		}
		return ChatResult{}, &prev, nil
	}
	for attempt := 1; ; attempt++ {
		res, prev, err := h.changeChatOnce(ctx, cc, id, command)
		if expected == 0 && attempt < 4 && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, prev, err
	}
}

func (h *Handlers) changeChatOnce(ctx context.Context, cc Context, id uuid.UUID, command func(chat.Access, chat.State) (any, error)) (ChatResult, *eventstore.IdempotentResult, error) {
	st, tenant, last, err := h.loadChat(ctx, id, 0)
	if err != nil {
		return ChatResult{}, nil, err
	}
	var access chat.Access
	if st.Version > 0 {
		if access, _, _, err = h.chatAccess(ctx, cc.Actor, st.SpaceID); err != nil {
			return ChatResult{}, nil, err
		}
	}
	cmd, err := command(access, st)
	if err != nil {
		return ChatResult{}, nil, err
	}
	evs, err := chat.Decide(st, cmd, h.now())
	if err != nil {
		return ChatResult{}, nil, err
	}
	if len(evs) == 0 {
		return ChatResult{Chat: st, Tenant: tenant, Position: last}, nil, nil
	}
	res, prev, err := h.appendIdempotent(ctx, nil, cc, id, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: chat.StreamType, StreamID: id, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
	})
	if prev != nil {
		return ChatResult{}, prev, nil
	}
	out, err := h.chatOutcome(ctx, st, tenant, evs, res, nil, err)
	return out, nil, err
}

func (h *Handlers) chatOutcome(ctx context.Context, st chat.State, tenant uuid.UUID, evs []domain.Event, res eventstore.AppendResult, prev *eventstore.IdempotentResult, err error) (ChatResult, error) {
	if prev != nil {
		return h.chatReplay(ctx, *prev, nil)
	}
	if err != nil {
		return ChatResult{}, err
	}
	for _, e := range evs {
		st = chat.Evolve(st, e)
	}
	return ChatResult{Chat: st, Tenant: tenant, Position: res.Position, Events: evs}, nil
}

// chatReplay rebuilds the result of an earlier idempotent command from the chat's stream as it was
// right after that command.
func (h *Handlers) chatReplay(ctx context.Context, prev eventstore.IdempotentResult, err error) (ChatResult, error) {
	if err != nil {
		return ChatResult{}, err
	}
	st, tenant, err := h.Chat(ctx, prev.StreamID, prev.StreamVersion)
	if err != nil {
		return ChatResult{}, fmt.Errorf("replay idempotent result: %w", err)
	}
	return ChatResult{Chat: st, Tenant: tenant, Position: prev.Position}, nil
}

// postReplay rebuilds a repeated post's result: the message posted last by the command that wrote
// the stored version.
func (h *Handlers) postReplay(ctx context.Context, prev eventstore.IdempotentResult, err error) (PostResult, error) {
	if err != nil {
		return PostResult{}, err
	}
	recs, err := h.store.ReadStream(ctx, prev.StreamID, prev.StreamVersion)
	if err != nil {
		return PostResult{}, fmt.Errorf("replay idempotent result: %w", err)
	}
	var out PostResult
	var st chat.State
	for _, r := range recs {
		st = chat.Evolve(st, r.Event)
		if r.TenantID != nil {
			out.Tenant = *r.TenantID
		}
		switch e := r.Event.(type) {
		case chat.MessagePosted:
			out.Message, out.ReplyID = e, nil
		case chat.ReplyStarted:
			if e.ReplyTo == out.Message.MessageID {
				id := e.MessageID
				out.ReplyID = &id
			}
		}
	}
	if out.Message.MessageID == uuid.Nil {
		return PostResult{}, fmt.Errorf("replay idempotent result: no message in chat %s", prev.StreamID)
	}
	out.Chat, out.Position = st, prev.Position
	return out, nil
}
