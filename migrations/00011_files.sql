-- +goose Up
-- Read models of the files projector. tenant_id is the owner of the space (a user or an
-- organization), for row-level security.
CREATE TABLE folders (
    id         uuid        PRIMARY KEY,
    space_id   uuid        NOT NULL,
    tenant_id  uuid        NOT NULL,
    parent_id  uuid,
    name       text        NOT NULL,
    version    bigint      NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX folders_space_parent_idx ON folders (space_id, parent_id, id);
CREATE INDEX folders_parent_idx ON folders (parent_id);

CREATE TABLE files (
    id              uuid        PRIMARY KEY,
    space_id        uuid        NOT NULL,
    tenant_id       uuid        NOT NULL,
    folder_id       uuid,
    name            text        NOT NULL,
    visibility      text        NOT NULL,
    uploaded_by     uuid        NOT NULL,
    current_version bigint      NOT NULL,
    size            bigint      NOT NULL,
    sha256          text        NOT NULL,
    content_type    text        NOT NULL,
    blob_key        text        NOT NULL,
    version         bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX files_space_idx ON files (space_id, id);
CREATE INDEX files_folder_idx ON files (folder_id, id);

CREATE TABLE file_versions (
    file_id      uuid        NOT NULL,
    version      bigint      NOT NULL,
    space_id     uuid        NOT NULL,
    tenant_id    uuid        NOT NULL,
    blob_key     text        NOT NULL,
    size         bigint      NOT NULL,
    sha256       text        NOT NULL,
    content_type text        NOT NULL,
    uploaded_by  uuid        NOT NULL,
    uploaded_at  timestamptz NOT NULL,
    PRIMARY KEY (file_id, version)
);

-- Deleted spaces and folders (with every folder below them), as the files projector saw them: what
-- arrives in them later in the log is deleted on arrival.
CREATE TABLE file_tombstones (
    id uuid PRIMARY KEY
);

-- Every blob key an event references whose content has not been deleted yet. The orphan sweep
-- deletes only objects that are not here.
CREATE TABLE blob_refs (
    blob_key text PRIMARY KEY,
    file_id  uuid NOT NULL
);

-- Work items of the blob reaper: content to delete from the bucket. The projector adds them in the
-- same transaction as its checkpoint; the reaper deletes the object, then the item and the ref.
CREATE TABLE blob_deletions (
    blob_key        text        PRIMARY KEY,
    enqueued_at     timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text
);
CREATE INDEX blob_deletions_due_idx ON blob_deletions (next_attempt_at);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON folders, files, file_versions, file_tombstones, blob_refs, blob_deletions TO atlas_projector;
GRANT SELECT ON folders, files, file_versions TO atlas_api;
ALTER TABLE folders ENABLE ROW LEVEL SECURITY;
ALTER TABLE folders FORCE ROW LEVEL SECURITY;
ALTER TABLE files ENABLE ROW LEVEL SECURITY;
ALTER TABLE files FORCE ROW LEVEL SECURITY;
ALTER TABLE file_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE file_versions FORCE ROW LEVEL SECURITY;
ALTER TABLE file_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE file_tombstones FORCE ROW LEVEL SECURITY;
ALTER TABLE blob_refs ENABLE ROW LEVEL SECURITY;
ALTER TABLE blob_refs FORCE ROW LEVEL SECURITY;
ALTER TABLE blob_deletions ENABLE ROW LEVEL SECURITY;
ALTER TABLE blob_deletions FORCE ROW LEVEL SECURITY;
CREATE POLICY projector ON folders TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON files TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON file_versions TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON file_tombstones TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON blob_refs TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON blob_deletions TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
-- Folders and files are visible in their space's tenant or where the space is readable across
-- tenants; a public file to anyone signed in.
CREATE POLICY tenant ON folders FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = folders.space_id AND p.permission = 'read'));
CREATE POLICY tenant ON files FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = files.space_id AND p.permission = 'read')
        OR (visibility = 'public' AND atlas_user() IS NOT NULL));
CREATE POLICY tenant ON file_versions FOR SELECT TO atlas_api
    USING (EXISTS (SELECT 1 FROM files f WHERE f.id = file_versions.file_id));

-- +goose Down
DROP TABLE blob_deletions;
DROP TABLE blob_refs;
DROP TABLE file_tombstones;
DROP TABLE file_versions;
DROP TABLE files;
DROP TABLE folders;
