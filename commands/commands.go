// Package commands holds Atlas's command handlers: each loads an aggregate from its stream, lets the
// domain decide, and appends the resulting events together with their uniqueness reservations and
// idempotency key, in one statement.
package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gocloud.dev/blob"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/apikey"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/domain/platform"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/task"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
)

// RegisterEvents adds every event payload of the aggregates that commands handle to r.
func RegisterEvents(r *eventstore.Registry) {
	eventstore.Register[user.Registered](r)
	eventstore.Register[user.Erased](r)
	eventstore.Register[space.Created](r)
	r.RegisterUpcaster("space.created.v1", space.UpcastCreatedV1)
	eventstore.Register[space.DescriptionChanged](r)
	eventstore.Register[space.Renamed](r)
	eventstore.Register[space.SlugChanged](r)
	eventstore.Register[space.VisibilityChanged](r)
	eventstore.Register[space.Deleted](r)
	eventstore.Register[space.MemberAdded](r)
	eventstore.Register[space.MemberRoleChanged](r)
	eventstore.Register[space.MemberRemoved](r)
	eventstore.Register[apikey.Created](r)
	eventstore.Register[apikey.Revoked](r)
	eventstore.Register[org.Created](r)
	eventstore.Register[org.Renamed](r)
	eventstore.Register[org.SlugChanged](r)
	eventstore.Register[org.Deleted](r)
	eventstore.Register[org.MemberInvited](r)
	eventstore.Register[org.InvitationRevoked](r)
	eventstore.Register[org.MemberJoined](r)
	eventstore.Register[org.MemberRoleChanged](r)
	eventstore.Register[org.MemberRemoved](r)
	eventstore.Register[note.Created](r)
	eventstore.Register[note.Edited](r)
	eventstore.Register[note.Deleted](r)
	eventstore.Register[file.Uploaded](r)
	eventstore.Register[file.VersionAdded](r)
	eventstore.Register[file.Renamed](r)
	eventstore.Register[file.Moved](r)
	eventstore.Register[file.VisibilityChanged](r)
	eventstore.Register[file.Deleted](r)
	eventstore.Register[file.LinkCreated](r)
	eventstore.Register[file.LinkRevoked](r)
	eventstore.Register[file.FolderCreated](r)
	eventstore.Register[file.FolderRenamed](r)
	eventstore.Register[file.FolderMoved](r)
	eventstore.Register[file.FolderDeleted](r)
	eventstore.Register[platform.RoleGranted](r)
	eventstore.Register[platform.RoleRevoked](r)
	eventstore.Register[chat.Created](r)
	eventstore.Register[chat.Renamed](r)
	eventstore.Register[chat.Deleted](r)
	eventstore.Register[chat.MessagePosted](r)
	eventstore.Register[chat.ReplyStarted](r)
	eventstore.Register[chat.ReplyTextAppended](r)
	eventstore.Register[chat.ReplyToolCalled](r)
	eventstore.Register[chat.ReplyToolResulted](r)
	eventstore.Register[chat.ReplyCompleted](r)
	eventstore.Register[chat.ReplyFailed](r)
	eventstore.Register[chat.ReplyCancelled](r)
	eventstore.Register[task.Created](r)
	eventstore.Register[task.Queued](r)
	eventstore.Register[task.Started](r)
	eventstore.Register[task.OutputAppended](r)
	eventstore.Register[task.Completed](r)
	eventstore.Register[task.Failed](r)
	eventstore.Register[task.Cancelled](r)
	eventstore.Register[task.Retried](r)
}

// Context is who issues a command and how to trace and deduplicate it.
type Context struct {
	Actor          uuid.UUID // the signed-in user; uuid.Nil for anonymous commands (register, login)
	RequestID      string
	CorrelationID  string
	IdempotencyKey string // optional; with RequestHash, a repeat returns the first result
	RequestHash    []byte
}

func (c Context) metadata(commandID uuid.UUID) eventstore.Metadata {
	m := eventstore.Metadata{
		CorrelationID: c.CorrelationID,
		CausationID:   commandID.String(),
		CommandID:     commandID.String(),
		RequestID:     c.RequestID,
	}
	if m.CorrelationID == "" {
		m.CorrelationID = commandID.String()
	}
	if c.Actor != uuid.Nil {
		a := c.Actor
		m.ActorID = &a
	}
	return m
}

// Handlers executes commands against the event store.
type Handlers struct {
	store      *eventstore.Store
	sessions   Sessions
	hasher     PasswordHasher
	now        func() time.Time
	sessionTTL time.Duration
	usage      keyUsage
	orgLocks   chan struct{} // slots for holding organization locks (orglock.go)
	bucket     *blob.Bucket  // file content
	keys       KeyEraser     // destroys personal-data keys (erasure)
	taskQueue  TaskQueue     // where tasks run; nil: tasks are refused
}

// Config configures Handlers.
type Config struct {
	Store      *eventstore.Store
	Sessions   Sessions
	Hasher     PasswordHasher
	Now        func() time.Time
	SessionTTL time.Duration
	Bucket     *blob.Bucket // where file content is stored
	Keys       KeyEraser    // the personal-data keys, destroyed by erasure
}

// New returns command handlers.
func New(c Config) *Handlers {
	if c.Now == nil {
		c.Now = time.Now
	}
	clock := c.Now
	// PostgreSQL keeps microseconds: truncating here makes a command's response and the read models
	// built from its events agree to the last digit.
	c.Now = func() time.Time { return clock().UTC().Truncate(time.Microsecond) }
	if c.SessionTTL <= 0 {
		c.SessionTTL = 30 * 24 * time.Hour
	}
	return &Handlers{store: c.Store, sessions: c.Sessions, hasher: c.Hasher, now: c.Now, sessionTTL: c.SessionTTL,
		orgLocks: make(chan struct{}, orgLockSlots), bucket: c.Bucket, keys: c.Keys}
}

// load folds a stream's events (up to maxVersion; 0 for all) into an aggregate state, and returns the
// position of the last event folded.
func load[S any](ctx context.Context, store *eventstore.Store, id uuid.UUID, maxVersion int64, evolve func(S, domain.Event) S) (S, eventstore.Position, error) {
	var s S
	var pos eventstore.Position
	recs, err := store.ReadStream(ctx, id, maxVersion)
	if err != nil {
		return s, pos, err
	}
	for _, r := range recs {
		s = evolve(s, r.Event)
		pos = r.Position
	}
	return s, pos, nil
}

// replay returns the stored result of an idempotent command, or ok=false when the key is new.
// A key reused with a different request is CodeConflict.
func (h *Handlers) replay(ctx context.Context, cc Context) (eventstore.IdempotentResult, bool, error) {
	if cc.IdempotencyKey == "" || cc.Actor == uuid.Nil {
		return eventstore.IdempotentResult{}, false, nil
	}
	r, ok, err := h.store.LookupIdempotency(ctx, cc.Actor, cc.IdempotencyKey)
	if err != nil || !ok {
		return r, false, err
	}
	if !bytes.Equal(r.RequestHash, cc.RequestHash) {
		return r, false, domain.Errorf(domain.CodeConflict, "the Idempotency-Key was already used for a different request")
	}
	return r, true, nil
}

// appendIdempotent appends req with cc's idempotency key (if any). When a concurrent duplicate won the
// key, it returns that duplicate's stored result instead of an error.
// With t, it appends in that transaction.
func (h *Handlers) appendIdempotent(ctx context.Context, t *txn, cc Context, stream uuid.UUID, req eventstore.AppendRequest) (eventstore.AppendResult, *eventstore.IdempotentResult, error) {
	if cc.IdempotencyKey != "" && cc.Actor != uuid.Nil {
		req.Idempotency = &eventstore.IdempotencyKey{ActorID: cc.Actor, Key: cc.IdempotencyKey, RequestHash: cc.RequestHash, StreamID: stream}
	}
	res, err := h.appendIn(ctx, t, req)
	// A concurrent duplicate may surface as any of the constraints it shares with this append (the
	// order in which PostgreSQL checks them is not defined): look for its stored result first.
	if err != nil && req.Idempotency != nil && (errors.Is(err, eventstore.ErrIdempotencyKeyUsed) ||
		errors.Is(err, eventstore.ErrVersionConflict) || errors.Is(err, eventstore.ErrReserved)) {
		if prev, ok, err2 := h.replay(ctx, cc); err2 != nil {
			return res, nil, err2
		} else if ok {
			return res, &prev, nil
		}
	}
	if err != nil {
		return res, nil, fmt.Errorf("append to %s: %w", stream, err)
	}
	return res, nil, nil
}
