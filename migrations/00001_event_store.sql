-- +goose Up
-- The event log: the single source of truth. Auditors query it with SQL, so its column names are part of
-- the contract (docs/architecture.md).
CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_type     text        NOT NULL CHECK (stream_type ~ '^[a-z][a-z0-9_]*$'),
    stream_id       uuid        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.]*$'),
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    tenant_id       uuid,
    recorded_at     timestamptz NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

-- Delivery order for subscribers: (transaction_id, global_position) below the snapshot's xmin.
CREATE INDEX events_delivery_idx ON events (transaction_id, global_position);
CREATE INDEX events_tenant_idx ON events (tenant_id, global_position);

-- The per-stream hash chain link. hash = sha256(prev_hash || canonical envelope), where the canonical
-- envelope is the newline-joined text that events_canonical builds. It is computed here, in the
-- database, so that no writer can forget it, and so that a verifier can recompute it from the stored
-- columns alone (jsonb's text form is canonical). Row-level BEFORE triggers see the rows inserted
-- earlier by the same statement, so a multi-event append chains correctly.
-- +goose StatementBegin
CREATE FUNCTION events_canonical(e events) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(
        e.event_id::text || E'\n' ||
        e.stream_type || E'\n' ||
        e.stream_id::text || E'\n' ||
        e.stream_version::text || E'\n' ||
        e.event_type || E'\n' ||
        e.schema_version::text || E'\n' ||
        coalesce(e.tenant_id::text, '') || E'\n' ||
        (extract(epoch FROM e.recorded_at) * 1000000)::bigint::text || E'\n' ||
        e.data::text || E'\n' ||
        e.metadata::text,
        'UTF8')
$$;

CREATE FUNCTION events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prev bytea;
    prev_xid xid8;
BEGIN
    IF NEW.stream_version = 1 THEN
        prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    ELSE
        SELECT hash, transaction_id INTO prev, prev_xid FROM events
         WHERE stream_id = NEW.stream_id AND stream_version = NEW.stream_version - 1;
        IF prev IS NULL THEN
            RAISE EXCEPTION 'stream % has no version %', NEW.stream_id, NEW.stream_version - 1
                USING ERRCODE = 'AT001';
        END IF;
        -- Delivery order is (transaction_id, global_position). A transaction that took its id before
        -- the previous version's transaction (by writing before it read the stream) would be
        -- delivered before that version: refuse it as a version conflict.
        IF prev_xid > NEW.transaction_id THEN
            RAISE EXCEPTION 'stream % version % committed after this transaction took its id; reload and retry',
                NEW.stream_id, NEW.stream_version - 1 USING ERRCODE = 'AT001';
        END IF;
    END IF;
    NEW.prev_hash := prev;
    -- The same text as events_canonical(NEW), written out because calling a SQL function from the
    -- trigger costs about a quarter of append throughput. A test keeps the two identical.
    NEW.hash := sha256(prev || convert_to(
        NEW.event_id::text || E'\n' ||
        NEW.stream_type || E'\n' ||
        NEW.stream_id::text || E'\n' ||
        NEW.stream_version::text || E'\n' ||
        NEW.event_type || E'\n' ||
        NEW.schema_version::text || E'\n' ||
        coalesce(NEW.tenant_id::text, '') || E'\n' ||
        (extract(epoch FROM NEW.recorded_at) * 1000000)::bigint::text || E'\n' ||
        NEW.data::text || E'\n' ||
        NEW.metadata::text,
        'UTF8'));
    RETURN NEW;
END
$$;

CREATE FUNCTION events_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % rejected', TG_OP USING ERRCODE = 'AT002';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER events_chain BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_chain();

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_immutable();

-- Uniqueness reservations (an email, a slug per owner): rows written in the same statement as the events
-- that claim or release them, so they can never disagree with the log.
CREATE TABLE reservations (
    scope      text        NOT NULL,
    key        text        NOT NULL,
    stream_id  uuid        NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX reservations_stream_idx ON reservations (stream_id);

-- Idempotency keys: the first result of a command repeated with the same key by the same caller.
CREATE TABLE idempotency_keys (
    actor_id       uuid        NOT NULL,
    key            text        NOT NULL,
    request_hash   bytea       NOT NULL,
    stream_id      uuid        NOT NULL,
    stream_version bigint      NOT NULL,
    transaction_id xid8        NOT NULL,
    position       bigint      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, key)
);

-- Per-person data keys for personal data inside events. Erasure destroys the key (crypto-shredding)
-- and keeps the row as a tombstone, so no new key can be made for an erased person.
CREATE TABLE subject_keys (
    subject_id uuid        PRIMARY KEY,
    key        bytea       CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);

-- +goose Down
DROP TABLE subject_keys;
DROP TABLE idempotency_keys;
DROP TABLE reservations;
DROP TABLE events CASCADE;
DROP FUNCTION events_immutable();
DROP FUNCTION events_chain();
