-- +goose Up
-- Read model of the api_keys projector: a user's keys, for listing (authentication goes through the
-- key's reservation, written with its events).
CREATE TABLE api_keys (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    name       text        NOT NULL,
    prefix     text        NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    version    bigint      NOT NULL
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, id);

-- When each key was last used: operational data written by requests (at most once a minute per key
-- and process), kept apart from the projected table so a rebuild reproduces that table exactly.
CREATE TABLE api_key_usage (
    key_id       uuid        PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE api_key_usage;
DROP TABLE api_keys;
