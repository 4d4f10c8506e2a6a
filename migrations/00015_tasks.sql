-- +goose Up
-- Read model of the tasks projector. tenant_id is the owner of the task's space (a user or an
-- organization), for row-level security. The job queue's own tables (River's river_*) are created
-- by migrations.Up after the goose migrations (see migrations/river.go).
CREATE TABLE tasks (
    id           uuid        PRIMARY KEY,
    space_id     uuid        NOT NULL,
    tenant_id    uuid        NOT NULL,
    kind         text        NOT NULL,
    input        jsonb       NOT NULL,
    status       text        NOT NULL,
    run          int         NOT NULL DEFAULT 0,
    attempt      int         NOT NULL DEFAULT 0,
    attempts     int         NOT NULL DEFAULT 0,
    max_attempts int         NOT NULL,
    output       text        NOT NULL DEFAULT '',
    result       jsonb,
    error        text,
    retry_at     timestamptz,
    version      bigint      NOT NULL,
    created_by   uuid,
    created_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX tasks_space_idx ON tasks (space_id, id);
CREATE INDEX tasks_space_status_idx ON tasks (space_id, status, id);

-- Deleted spaces, as the tasks projector saw them: a task event of a space deleted earlier in the log
-- is never projected.
CREATE TABLE task_space_tombstones (
    space_id uuid PRIMARY KEY
);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON tasks, task_space_tombstones TO atlas_projector;
GRANT SELECT ON tasks TO atlas_api;
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks FORCE ROW LEVEL SECURITY;
ALTER TABLE task_space_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_space_tombstones FORCE ROW LEVEL SECURITY;
CREATE POLICY projector ON tasks TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON task_space_tombstones TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
-- A task is visible in its space's tenant, or where its space is readable across tenants (shared or
-- public), as for notes.
CREATE POLICY tenant ON tasks FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = tasks.space_id AND p.permission = 'read'));

-- +goose Down
DROP TABLE task_space_tombstones;
DROP TABLE tasks;
