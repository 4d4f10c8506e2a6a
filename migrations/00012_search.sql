-- +goose Up
-- The search projector's work items: documents whose index entries must be brought up to date. One
-- row per document (a later event moves its position on); position and transaction_id are those of
-- the last event that touched it, which the indexer waits for in the source read model.
CREATE TABLE search_work (
    doc_id          uuid        PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('note', 'file', 'folder', 'space')),
    tenant_id       uuid        NOT NULL,
    position        bigint      NOT NULL,
    transaction_id  bigint      NOT NULL,
    enqueued_at     timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text
);
CREATE INDEX search_work_due_idx ON search_work (next_attempt_at);

-- Each indexed document's state, shown on the document: pending (a change waits for the indexer),
-- indexed (with the version and chunk count), failed (with the reason; the text could not be read).
CREATE TABLE search_docs (
    doc_id          uuid        PRIMARY KEY,
    kind            text        NOT NULL,
    space_id        uuid,
    tenant_id       uuid        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('pending', 'indexed', 'failed')),
    reason          text,
    indexed_version bigint,
    chunks          integer,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX search_docs_tenant_idx ON search_docs (tenant_id, kind);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON search_work, search_docs TO atlas_projector;
GRANT SELECT ON search_docs TO atlas_api;
ALTER TABLE search_work ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_work FORCE ROW LEVEL SECURITY;
ALTER TABLE search_docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_docs FORCE ROW LEVEL SECURITY;
CREATE POLICY projector ON search_work TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON search_docs TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY tenant ON search_docs FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = search_docs.space_id AND p.permission = 'read'));

-- +goose Down
DROP TABLE search_docs;
DROP TABLE search_work;
