package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/argon2"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
)

// EmailScope is the reservation scope that keeps emails unique. Its keys are SHA-256 digests of the
// normalised email, so the reservation table holds no readable address.
const EmailScope = "user.email"

// EmailKey returns the reservation key of an email.
func EmailKey(email string) string {
	sum := sha256.Sum256([]byte("atlas-email:" + user.NormalizeEmail(email)))
	return hex.EncodeToString(sum[:])
}

// PasswordHasher hashes and verifies passwords.
type PasswordHasher interface {
	Hash(password string) (string, error)
	Verify(hash, password string) bool
}

// Argon2id hashes passwords with argon2id and stores them in the PHC string format.
type Argon2id struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultArgon2id follows OWASP's minimum recommendation (19 MiB, 2 passes, 1 lane).
var DefaultArgon2id = Argon2id{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// Hash implements PasswordHasher.
func (a Argon2id) Hash(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, a.Time, a.MemoryKiB, a.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, a.MemoryKiB, a.Time, a.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify implements PasswordHasher, using the parameters stored in hash.
func (a Argon2id) Verify(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// Sessions stores session tokens by their SHA-256 hash only.
type Sessions struct {
	Pool *pgxpool.Pool
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// create issues a new random session token (256 bits) for userID.
func (s Sessions) create(ctx context.Context, userID uuid.UUID, now time.Time, ttl time.Duration) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := "atls_" + base64.RawURLEncoding.EncodeToString(raw)
	_, err := s.Pool.Exec(ctx, `INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		uuid.Must(uuid.NewV7()), hashToken(token), userID, now, now.Add(ttl))
	if err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	return token, nil
}

// Authenticate returns the user of a live session token or API key; CodeUnauthenticated otherwise.
func (h *Handlers) Authenticate(ctx context.Context, token string) (uuid.UUID, error) {
	if IsAPIKey(token) {
		return h.authenticateAPIKey(ctx, token)
	}
	var id uuid.UUID
	// An erased user's sessions are deleted with the erasure; the check on the log also refuses one
	// created by a login that raced it.
	err := h.sessions.Pool.QueryRow(ctx, `SELECT user_id FROM sessions
		WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2
		  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = sessions.user_id AND e.event_type = '`+erasedType+`')`,
		hashToken(token), h.now()).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, domain.Errorf(domain.CodeUnauthenticated, "the token is invalid, expired or revoked")
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("authenticate: %w", err)
	}
	return id, nil
}

// Logout revokes a session token. Revoking an unknown or revoked token is not an error.
func (h *Handlers) Logout(ctx context.Context, token string) error {
	_, err := h.sessions.Pool.Exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL`,
		hashToken(token), h.now())
	return err
}

// Registration is the result of Register and Login.
type Registration struct {
	User     user.State
	Token    string
	Position eventstore.Position
}

// Register creates a user and their personal space in one append, claiming the email and the
// personal slug, and signs the user in. Errors: CodeInvalid for broken fields, CodeConflict when the
// email is registered already.
func (h *Handlers) Register(ctx context.Context, cc Context, email, name, password string) (Registration, error) {
	cmd := user.Register{UserID: uuid.Must(uuid.NewV7()), Email: email, Name: name, Password: password,
		PersonalSpaceID: uuid.Must(uuid.NewV7())}
	if err := user.ValidateRegister(cmd); err != nil {
		return Registration{}, err
	}
	var taken bool
	if err := h.sessions.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM reservations WHERE scope = $1 AND key = $2)`,
		EmailScope, EmailKey(email)).Scan(&taken); err != nil {
		return Registration{}, err
	}
	if taken {
		return Registration{}, errEmailTaken
	}
	hash, err := h.hasher.Hash(password)
	if err != nil {
		return Registration{}, err
	}
	cmd.PasswordHash = hash
	now := h.now()
	userEvents, err := user.Decide(user.State{}, cmd, now)
	if err != nil {
		return Registration{}, err
	}
	spaceEvents, err := space.Decide(space.State{}, space.Create{Actor: cmd.UserID, SpaceID: cmd.PersonalSpaceID,
		Personal: true, Name: "Personal", Slug: space.PersonalSlug, Visibility: space.Private}, now)
	if err != nil {
		return Registration{}, err
	}
	cc.Actor = cmd.UserID
	tenant := cmd.UserID
	res, err := h.store.Append(ctx, eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{
			{StreamType: user.StreamType, StreamID: cmd.UserID, TenantID: &tenant, Events: userEvents},
			{StreamType: space.StreamType, StreamID: cmd.PersonalSpaceID, TenantID: &tenant, Events: spaceEvents},
		},
		Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		Claim: []eventstore.Reservation{
			{Scope: EmailScope, Key: EmailKey(email), StreamID: cmd.UserID},
			{Scope: space.SlugScope(cmd.UserID), Key: space.PersonalSlug, StreamID: cmd.PersonalSpaceID},
		},
	})
	if errors.Is(err, eventstore.ErrReserved) {
		return Registration{}, errEmailTaken
	}
	if err != nil {
		return Registration{}, fmt.Errorf("register: %w", err)
	}
	var st user.State
	for _, e := range userEvents {
		st = user.Evolve(st, e)
	}
	token, err := h.sessions.create(ctx, cmd.UserID, now, h.sessionTTL)
	if err != nil {
		return Registration{}, err
	}
	return Registration{User: st, Token: token, Position: res.Position}, nil
}

// erasedType is the stored event type of user.erased.
const erasedType = "user.erased"

var errEmailTaken = domain.Errorf(domain.CodeConflict, "an account with this email already exists")

var errBadCredentials = domain.Errorf(domain.CodeUnauthenticated, "wrong email or password")

// dummyHash is verified when an email is unknown, so that a wrong email and a wrong password take the
// same time.
var dummyHash, _ = DefaultArgon2id.Hash("atlas-dummy-password")

// Login checks an email and password and issues a session token. A wrong email and a wrong password
// give the same CodeUnauthenticated error.
func (h *Handlers) Login(ctx context.Context, email, password string) (Registration, error) {
	var id uuid.UUID
	err := h.sessions.Pool.QueryRow(ctx, `SELECT stream_id FROM reservations WHERE scope = $1 AND key = $2`,
		EmailScope, EmailKey(email)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		h.hasher.Verify(dummyHash, password)
		return Registration{}, errBadCredentials
	}
	if err != nil {
		return Registration{}, fmt.Errorf("login: %w", err)
	}
	st, pos, err := load(ctx, h.store, id, 0, user.Evolve)
	if err != nil {
		return Registration{}, err
	}
	if !st.Exists() || !h.hasher.Verify(st.PasswordHash, password) {
		return Registration{}, errBadCredentials
	}
	token, err := h.sessions.create(ctx, id, h.now(), h.sessionTTL)
	if err != nil {
		return Registration{}, err
	}
	return Registration{User: st, Token: token, Position: pos}, nil
}

// User loads a user aggregate from its stream.
func (h *Handlers) User(ctx context.Context, id uuid.UUID) (user.State, error) {
	st, _, err := load(ctx, h.store, id, 0, user.Evolve)
	return st, err
}

// Retention of credentials and idempotency records that no longer matter.
const (
	// SessionRetention is how long an expired or revoked session's row is kept (for support and audit
	// questions such as "was this token ever valid?").
	SessionRetention = 7 * 24 * time.Hour
	// IdempotencyRetention is how long a repeated Idempotency-Key returns the first result.
	IdempotencyRetention = 24 * time.Hour
)

// Sweep deletes session rows expired or revoked more than SessionRetention ago and idempotency keys
// older than IdempotencyRetention. It returns how many rows of each it deleted.
func (h *Handlers) Sweep(ctx context.Context) (sessions, keys int64, err error) {
	now := h.now()
	tag, err := h.sessions.Pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1`, now.Add(-SessionRetention))
	if err != nil {
		return 0, 0, fmt.Errorf("sweep sessions: %w", err)
	}
	sessions = tag.RowsAffected()
	// Idempotency keys are stamped by the database's clock, so they are aged by it too.
	tag, err = h.sessions.Pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval`,
		IdempotencyRetention.String())
	if err != nil {
		return sessions, 0, fmt.Errorf("sweep idempotency keys: %w", err)
	}
	return sessions, tag.RowsAffected(), nil
}
