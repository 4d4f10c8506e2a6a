-- +goose Up
-- Session tokens: only the SHA-256 of the token is stored. Sessions are credentials, not domain facts,
-- so they live outside the event log (docs/architecture.md, "Sessions").
CREATE TABLE sessions (
    id         uuid        PRIMARY KEY,
    token_hash bytea       NOT NULL UNIQUE,
    user_id    uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Read model of the users projector (decrypted personal data; erasure drops it).
CREATE TABLE users (
    id                uuid        PRIMARY KEY,
    email             text        NOT NULL,
    name              text        NOT NULL,
    personal_space_id uuid        NOT NULL,
    version           bigint      NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- Read model of the spaces projector.
CREATE TABLE spaces (
    id            uuid        PRIMARY KEY,
    owner_user_id uuid,
    org_id        uuid,
    personal      boolean     NOT NULL,
    name          text        NOT NULL,
    slug          text        NOT NULL,
    visibility    text        NOT NULL,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX spaces_owner_user_idx ON spaces (owner_user_id, id);
CREATE INDEX spaces_org_idx ON spaces (org_id, id);

-- +goose Down
DROP TABLE spaces;
DROP TABLE users;
DROP TABLE sessions;
