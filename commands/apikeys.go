package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/apikey"
	"github.com/atlas-workspace/atlas/eventstore"
)

// APIKeyScope is the reservation scope of API keys: key = the key's hex SHA-256, held by the key's
// stream while the key is live. Authentication looks keys up there, so a key works as soon as its
// creation is committed and stops as soon as its revocation is.
const APIKeyScope = "api_key"

// apiKeyPrefix starts every API key, so a token's kind is visible (and secret scanners can find it).
const apiKeyPrefix = "atlk_"

// hexSHA256 is the hex SHA-256 of a secret (an API key, an invitation token): what is stored of it.
func hexSHA256(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// APIKeyResult is a key's state after a command, the key itself (only at creation) and the position.
type APIKeyResult struct {
	Key      apikey.State
	Secret   string
	Position eventstore.Position
}

// CreateAPIKey makes a new 256-bit key for cc.Actor. The key is returned once; only its hash is kept.
// Errors: CodeInvalid for a bad name.
func (h *Handlers) CreateAPIKey(ctx context.Context, cc Context, name string) (APIKeyResult, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return APIKeyResult{}, err
	}
	secret := apiKeyPrefix + base64.RawURLEncoding.EncodeToString(raw)
	id := uuid.Must(uuid.NewV7())
	hash := hexSHA256(secret)
	evs, err := apikey.Decide(apikey.State{}, apikey.Create{Actor: cc.Actor, KeyID: id, Name: name, KeyHash: hash,
		Prefix: secret[:len(apiKeyPrefix)+6]}, h.now())
	if err != nil {
		return APIKeyResult{}, err
	}
	tenant := cc.Actor
	res, err := h.store.Append(ctx, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: apikey.StreamType, StreamID: id, TenantID: &tenant, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		Claim:    []eventstore.Reservation{{Scope: APIKeyScope, Key: hash, StreamID: id}},
	})
	if err != nil {
		return APIKeyResult{}, fmt.Errorf("create api key: %w", err)
	}
	return APIKeyResult{Key: apikey.Evolve(apikey.State{}, evs[0]), Secret: secret, Position: res.Position}, nil
}

// RevokeAPIKey revokes one of cc.Actor's keys. Errors: CodeNotFound when the key is not the actor's
// or is revoked already.
func (h *Handlers) RevokeAPIKey(ctx context.Context, cc Context, id uuid.UUID) (APIKeyResult, error) {
	st, _, err := load(ctx, h.store, id, 0, apikey.Evolve)
	if err != nil {
		return APIKeyResult{}, err
	}
	evs, err := apikey.Decide(st, apikey.Revoke{Actor: cc.Actor}, h.now())
	if err != nil {
		return APIKeyResult{}, err
	}
	res, err := h.store.Append(ctx, eventstore.AppendRequest{
		Streams:  []eventstore.StreamAppend{{StreamType: apikey.StreamType, StreamID: id, TenantID: &st.UserID, ExpectedVersion: st.Version, Events: evs}},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		Release:  []eventstore.Reservation{{Scope: APIKeyScope, Key: st.KeyHash, StreamID: id}},
	})
	if errors.Is(err, eventstore.ErrVersionConflict) {
		return APIKeyResult{}, domain.Errorf(domain.CodeNotFound, "api key not found") // revoked concurrently
	}
	if err != nil {
		return APIKeyResult{}, fmt.Errorf("revoke api key: %w", err)
	}
	return APIKeyResult{Key: apikey.Evolve(st, evs[0]), Position: res.Position}, nil
}

// keyUsage throttles last-used writes to one per key per minute in this process.
type keyUsage struct {
	mu   sync.Mutex
	last map[uuid.UUID]time.Time
}

func (u *keyUsage) due(id uuid.UUID, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.last == nil {
		u.last = map[uuid.UUID]time.Time{}
	}
	if t, ok := u.last[id]; ok && now.Sub(t) < time.Minute {
		return false
	}
	u.last[id] = now
	return true
}

// authenticateAPIKey returns the user of a live API key and records its use.
func (h *Handlers) authenticateAPIKey(ctx context.Context, key string) (uuid.UUID, error) {
	var keyID, userID uuid.UUID
	err := h.sessions.Pool.QueryRow(ctx, `
		SELECT r.stream_id, (e.data->>'user_id')::uuid FROM reservations r
		JOIN events e ON e.stream_id = r.stream_id AND e.stream_version = 1
		WHERE r.scope = $1 AND r.key = $2
		  AND NOT EXISTS (SELECT 1 FROM events x WHERE x.stream_id = (e.data->>'user_id')::uuid AND x.event_type = '`+erasedType+`')`,
		APIKeyScope, hexSHA256(key)).Scan(&keyID, &userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, domain.Errorf(domain.CodeUnauthenticated, "the token is invalid, expired or revoked")
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("authenticate api key: %w", err)
	}
	if now := h.now(); h.usage.due(keyID, now) {
		if _, err := h.sessions.Pool.Exec(ctx, `INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, $2)
			ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at`, keyID, now); err != nil {
			return uuid.Nil, fmt.Errorf("record api key use: %w", err)
		}
	}
	return userID, nil
}

// IsAPIKey reports whether a bearer token is an API key rather than a session token.
func IsAPIKey(token string) bool { return strings.HasPrefix(token, apiKeyPrefix) }
