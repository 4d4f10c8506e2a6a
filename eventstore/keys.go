package eventstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
)

// sealedPrefix marks a personal-data field sealed with AES-256-GCM under its subject's key.
const sealedPrefix = "enc:v1:"

// SubjectKeys seals and opens personal data with one AES-256 key per person, kept in the subject_keys
// table outside the log. Deleting a subject's key (erasure) makes its data read as domain.ErasedValue
// while the log and its hash chain stay intact.
type SubjectKeys struct {
	pool *pgxpool.Pool
	ttl  time.Duration

	mu    sync.Mutex
	cache map[uuid.UUID]cachedKey
}

type cachedKey struct {
	aead     cipher.AEAD // nil: the key is gone (erased)
	loadedAt time.Time
}

// NewSubjectKeys returns a key store over pool. Keys are cached for ttl, which bounds how long another
// process may still open a subject's data after its erasure.
func NewSubjectKeys(pool *pgxpool.Pool, ttl time.Duration) *SubjectKeys {
	return &SubjectKeys{pool: pool, ttl: ttl, cache: map[uuid.UUID]cachedKey{}}
}

// Seal encrypts plaintext for subject, creating the subject's key on first use. The key is created in
// its own short transaction (never inside an append), so an append that fails leaves at most an unused key.
func (k *SubjectKeys) Seal(subject uuid.UUID, plaintext string) (string, error) {
	aead, err := k.key(subject, true)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := aead.Seal(nonce, nonce, []byte(plaintext), subject[:])
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Open decrypts a sealed field. A field sealed for an erased subject opens as domain.ErasedValue.
func (k *SubjectKeys) Open(subject uuid.UUID, sealed string) (string, error) {
	if !strings.HasPrefix(sealed, sealedPrefix) {
		return "", fmt.Errorf("personal data field is not sealed")
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed[len(sealedPrefix):])
	if err != nil {
		return "", fmt.Errorf("sealed field: %w", err)
	}
	aead, err := k.key(subject, false)
	if err != nil {
		return "", err
	}
	if aead == nil {
		return domain.ErasedValue, nil
	}
	if len(raw) < aead.NonceSize() {
		return "", errors.New("sealed field is too short")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], subject[:])
	if err != nil {
		return "", fmt.Errorf("open personal data of %s: %w", subject, err)
	}
	return string(plain), nil
}

var errErased = errors.New("erased")

// Erase destroys subject's key (crypto-shredding): their sealed data reads as domain.ErasedValue from
// then on, here at once and in other processes once their cache entry expires. Idempotent.
func (k *SubjectKeys) Erase(ctx context.Context, subject uuid.UUID) error {
	_, err := k.pool.Exec(ctx, `
		INSERT INTO subject_keys (subject_id, key, erased_at) VALUES ($1, NULL, now())
		ON CONFLICT (subject_id) DO UPDATE SET key = NULL, erased_at = coalesce(subject_keys.erased_at, now())`, subject)
	if err != nil {
		return fmt.Errorf("erase key of %s: %w", subject, err)
	}
	k.Forget(subject)
	return nil
}

// Forget drops subject's key from this process's cache (after erasure).
func (k *SubjectKeys) Forget(subject uuid.UUID) {
	k.mu.Lock()
	delete(k.cache, subject)
	k.mu.Unlock()
}

func (k *SubjectKeys) key(subject uuid.UUID, create bool) (cipher.AEAD, error) {
	k.mu.Lock()
	c, ok := k.cache[subject]
	k.mu.Unlock()
	if ok && time.Since(c.loadedAt) < k.ttl && (c.aead != nil || !create) {
		return c.aead, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var raw []byte
	var err error
	if create {
		fresh := make([]byte, 32)
		if _, err := rand.Read(fresh); err != nil {
			return nil, err
		}
		err = k.pool.QueryRow(ctx, `
			WITH ins AS (
				INSERT INTO subject_keys (subject_id, key) VALUES ($1, $2)
				ON CONFLICT (subject_id) DO NOTHING RETURNING key)
			SELECT key FROM ins UNION ALL SELECT key FROM subject_keys WHERE subject_id = $1
			LIMIT 1`, subject, fresh).Scan(&raw)
		if err == nil && raw == nil {
			err = errErased
		}
	} else {
		err = k.pool.QueryRow(ctx, `SELECT key FROM subject_keys WHERE subject_id = $1`, subject).Scan(&raw)
	}
	var aead cipher.AEAD
	switch {
	case errors.Is(err, errErased):
		return nil, domain.Errorf(domain.CodeConflict, "subject %s has been erased", subject)
	case errors.Is(err, pgx.ErrNoRows) || (err == nil && raw == nil):
	case err != nil:
		return nil, fmt.Errorf("load key of %s: %w", subject, err)
	default:
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		if aead, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	k.cache[subject] = cachedKey{aead: aead, loadedAt: time.Now()}
	k.mu.Unlock()
	return aead, nil
}
