-- +goose Up
-- Read models of the notes projector. tenant_id is the owner of the note's space (a user or an
-- organization), for row-level security.
CREATE TABLE notes (
    id         uuid        PRIMARY KEY,
    space_id   uuid        NOT NULL,
    tenant_id  uuid        NOT NULL,
    title      text        NOT NULL,
    body       text        NOT NULL,
    version    bigint      NOT NULL,
    created_by uuid,
    updated_by uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX notes_space_idx ON notes (space_id, id);

-- Every revision of every live note: the first is the creation, each edit adds one. revision is the
-- stream version of the event that made it.
CREATE TABLE note_revisions (
    note_id   uuid        NOT NULL,
    revision  bigint      NOT NULL,
    space_id  uuid        NOT NULL,
    tenant_id uuid        NOT NULL,
    title     text        NOT NULL,
    body      text        NOT NULL,
    edited_by uuid,
    edited_at timestamptz NOT NULL,
    PRIMARY KEY (note_id, revision)
);

-- Deleted spaces, as the notes projector saw them: a note created in a space after (in log order) the
-- space's deletion is never projected.
CREATE TABLE note_space_tombstones (
    space_id uuid PRIMARY KEY
);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON notes, note_revisions, note_space_tombstones TO atlas_projector;
GRANT SELECT ON notes, note_revisions TO atlas_api;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
ALTER TABLE note_revisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE note_revisions FORCE ROW LEVEL SECURITY;
ALTER TABLE note_space_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE note_space_tombstones FORCE ROW LEVEL SECURITY;
CREATE POLICY projector ON notes TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON note_revisions TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON note_space_tombstones TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
-- A note is visible in its space's tenant, or where its space is readable across tenants (shared or
-- public), as for spaces.
CREATE POLICY tenant ON notes FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = notes.space_id AND p.permission = 'read'));
CREATE POLICY tenant ON note_revisions FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = note_revisions.space_id AND p.permission = 'read'));

-- +goose Down
DROP TABLE note_space_tombstones;
DROP TABLE note_revisions;
DROP TABLE notes;
