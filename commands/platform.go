package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/platform"
	"github.com/atlas-workspace/atlas/eventstore"
)

// PlatformResult is the platform's role holders after a command, the user it concerned and the position.
type PlatformResult struct {
	Platform platform.State
	UserID   uuid.UUID
	Position eventstore.Position
}

// UserByEmail returns the id of the user registered with email. Errors: CodeNotFound.
func (h *Handlers) UserByEmail(ctx context.Context, email string) (uuid.UUID, error) {
	var id uuid.UUID
	err := h.sessions.Pool.QueryRow(ctx, `SELECT stream_id FROM reservations WHERE scope = $1 AND key = $2`,
		EmailScope, EmailKey(email)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, domain.Errorf(domain.CodeNotFound, "no user is registered with the email %q", email)
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("find user by email: %w", err)
	}
	return id, nil
}

// Platform returns the platform's role holders as the platform stream records them.
func (h *Handlers) Platform(ctx context.Context) (platform.State, error) {
	st, _, err := load(ctx, h.store, platform.StreamID, 0, platform.Evolve)
	return st, err
}

// GrantPlatformRole gives the user registered with email a platform role (admin or auditor). It is
// an operator's command (`atlas admin grant`); cc.Actor is uuid.Nil unless a user issues it.
// Errors: CodeNotFound for an unknown email, CodeInvalid for an unknown role, CodeConflict when the
// user holds the role already.
func (h *Handlers) GrantPlatformRole(ctx context.Context, cc Context, email, role string) (PlatformResult, error) {
	return h.platformCommand(ctx, cc, email, func(u uuid.UUID) any { return platform.Grant{User: u, Role: role} })
}

// RevokePlatformRole takes a platform role from the user registered with email. Errors as
// GrantPlatformRole; CodeConflict when the user does not hold the role.
func (h *Handlers) RevokePlatformRole(ctx context.Context, cc Context, email, role string) (PlatformResult, error) {
	return h.platformCommand(ctx, cc, email, func(u uuid.UUID) any { return platform.Revoke{User: u, Role: role} })
}

func (h *Handlers) platformCommand(ctx context.Context, cc Context, email string, cmd func(uuid.UUID) any) (PlatformResult, error) {
	u, err := h.UserByEmail(ctx, email)
	if err != nil {
		return PlatformResult{}, err
	}
	// The platform stream is shared by every grant: a concurrent one moves it on, so decide again.
	for attempt := 0; ; attempt++ {
		st, _, err := load(ctx, h.store, platform.StreamID, 0, platform.Evolve)
		if err != nil {
			return PlatformResult{}, err
		}
		evs, err := platform.Decide(st, cmd(u), h.now())
		if err != nil {
			return PlatformResult{}, err
		}
		res, err := h.store.Append(ctx, eventstore.AppendRequest{
			Streams: []eventstore.StreamAppend{{StreamType: platform.StreamType, StreamID: platform.StreamID,
				ExpectedVersion: st.Version, Events: evs}},
			Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		})
		if errors.Is(err, eventstore.ErrVersionConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return PlatformResult{}, fmt.Errorf("platform role: %w", err)
		}
		for _, e := range evs {
			st = platform.Evolve(st, e)
		}
		return PlatformResult{Platform: st, UserID: u, Position: res.Position}, nil
	}
}
