-- +goose Up
-- Read models of the chats projector. tenant_id is the owner of the chat's space (a user or an
-- organization), for row-level security.
CREATE TABLE chats (
    id              uuid        PRIMARY KEY,
    space_id        uuid        NOT NULL,
    tenant_id       uuid        NOT NULL,
    title           text        NOT NULL,
    version         bigint      NOT NULL,
    created_by      uuid,
    updated_by      uuid,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    message_count   integer     NOT NULL DEFAULT 0,
    last_message_at timestamptz
);
CREATE INDEX chats_space_idx ON chats (space_id, id);

-- Every message of every live chat, user and assistant. seq is the chat's stream version of the
-- event that created the message (the order of the conversation); parts are in the API's shape.
-- An assistant reply is 'streaming' until it is 'complete', 'failed' (reason in error) or
-- 'cancelled'; text_offset counts the bytes of reasoning and text it holds.
CREATE TABLE chat_messages (
    id           uuid        PRIMARY KEY,
    chat_id      uuid        NOT NULL,
    seq          bigint      NOT NULL,
    space_id     uuid        NOT NULL,
    tenant_id    uuid        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('user', 'assistant')),
    status       text        NOT NULL CHECK (status IN ('complete', 'streaming', 'failed', 'cancelled')),
    parts        jsonb       NOT NULL,
    model        text,
    reply_to     uuid,
    error        text,
    finish_reason text,
    author_id    uuid,
    text_offset  bigint      NOT NULL DEFAULT 0,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    completed_at timestamptz,
    UNIQUE (chat_id, seq)
);
-- Replies without progress, for the sweeper that fails interrupted ones.
CREATE INDEX chat_messages_streaming_idx ON chat_messages (updated_at) WHERE status = 'streaming';

-- Deleted spaces, as the chats projector saw them: a chat created in a space after (in log order) the
-- space's deletion is never projected.
CREATE TABLE chat_space_tombstones (
    space_id uuid PRIMARY KEY
);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON chats, chat_messages, chat_space_tombstones TO atlas_projector;
GRANT SELECT ON chats, chat_messages TO atlas_api;
ALTER TABLE chats ENABLE ROW LEVEL SECURITY;
ALTER TABLE chats FORCE ROW LEVEL SECURITY;
ALTER TABLE chat_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_messages FORCE ROW LEVEL SECURITY;
ALTER TABLE chat_space_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE chat_space_tombstones FORCE ROW LEVEL SECURITY;
CREATE POLICY projector ON chats TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON chat_messages TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON chat_space_tombstones TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
-- A chat is visible in its space's tenant, or where its space is readable across tenants (shared or
-- public), as for notes.
CREATE POLICY tenant ON chats FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = chats.space_id AND p.permission = 'read'));
CREATE POLICY tenant ON chat_messages FOR SELECT TO atlas_api
    USING (tenant_id = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = chat_messages.space_id AND p.permission = 'read'));

-- The search projector indexes chats too.
ALTER TABLE search_work DROP CONSTRAINT search_work_kind_check;
ALTER TABLE search_work ADD CONSTRAINT search_work_kind_check CHECK (kind IN ('note', 'file', 'folder', 'space', 'chat'));

-- +goose Down
DELETE FROM search_work WHERE kind = 'chat';
ALTER TABLE search_work DROP CONSTRAINT search_work_kind_check;
ALTER TABLE search_work ADD CONSTRAINT search_work_kind_check CHECK (kind IN ('note', 'file', 'folder', 'space'));
DROP TABLE chat_space_tombstones;
DROP TABLE chat_messages;
DROP TABLE chats;
