-- +goose Up
-- Seals of the global order (docs/architecture.md, "Tamper evidence"). Seal n covers the events with
-- from_position < global_position <= to_position, a range no running transaction can still add to;
-- hash = sha256(prev_hash || for each event in global_position order: its position as 8 big-endian
-- bytes, then its hash). Seal 1's prev_hash is 32 zero bytes and its from_position 0; every later seal
-- starts where the previous one ended and chains to its hash.
CREATE TABLE audit_seals (
    seq           bigint      PRIMARY KEY CHECK (seq > 0),
    from_position bigint      NOT NULL CHECK (from_position >= 0),
    to_position   bigint      NOT NULL,
    event_count   bigint      NOT NULL CHECK (event_count > 0),
    prev_hash     bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash          bytea       NOT NULL CHECK (length(hash) = 32),
    sealed_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (to_position > from_position),
    CHECK (event_count <= to_position - from_position)
);

-- The database keeps the seals a chain: a seal must follow the last one (next number, same boundary,
-- its hash as prev_hash). Two sealers racing both compute seal n; the primary key lets one in.
-- +goose StatementBegin
CREATE FUNCTION audit_seals_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last audit_seals;
BEGIN
    IF NEW.seq = 1 THEN
        IF NEW.from_position <> 0 OR NEW.prev_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea THEN
            RAISE EXCEPTION 'the first seal starts at position 0 with a zero prev_hash' USING ERRCODE = 'AT003';
        END IF;
        RETURN NEW;
    END IF;
    SELECT * INTO last FROM audit_seals WHERE seq = NEW.seq - 1;
    IF last.seq IS NULL OR last.to_position <> NEW.from_position OR last.hash <> NEW.prev_hash THEN
        RAISE EXCEPTION 'seal % does not continue seal %', NEW.seq, NEW.seq - 1 USING ERRCODE = 'AT003';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_seals_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit seals are append-only: % rejected', TG_OP USING ERRCODE = 'AT002';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_seals_chain BEFORE INSERT ON audit_seals FOR EACH ROW EXECUTE FUNCTION audit_seals_chain();
CREATE TRIGGER audit_seals_no_update_delete BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_seals_immutable();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seals_immutable();

-- The sealer runs as the API role: it reads the log, the identity sequence's high-water mark and
-- appends seals; nobody but the owner may change a seal, and the trigger stops the owner too.
GRANT SELECT, INSERT ON audit_seals TO atlas_api;
GRANT SELECT ON audit_seals TO atlas_projector;
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('GRANT SELECT ON SEQUENCE %s TO atlas_api', pg_get_serial_sequence('events', 'global_position'));
END
$$;
-- +goose StatementEnd

-- The organization audit log reads one tenant's events in delivery order (transaction_id,
-- global_position), like subscribers, so that a page boundary never skips an event that commits late.
-- This index replaces the tenant index by global position (same size, same append cost).
CREATE INDEX events_tenant_delivery_idx ON events (tenant_id, transaction_id, global_position);
DROP INDEX events_tenant_idx;

-- Platform roles (admin, auditor), projected from the platform stream's events. A signed-in user sees
-- their own roles only.
CREATE TABLE platform_roles (
    user_id    uuid        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('admin', 'auditor')),
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, role)
);
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON platform_roles TO atlas_projector;
GRANT SELECT ON platform_roles TO atlas_api;
ALTER TABLE platform_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY projector ON platform_roles TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY tenant ON platform_roles FOR SELECT TO atlas_api USING (user_id = atlas_user());

-- +goose Down
DROP TABLE platform_roles;
CREATE INDEX events_tenant_idx ON events (tenant_id, global_position);
DROP INDEX events_tenant_delivery_idx;
DROP TABLE audit_seals;
DROP FUNCTION audit_seals_immutable();
DROP FUNCTION audit_seals_chain();
