-- +goose Up
-- Which Weaviate collection answers searches (active) and which one the indexer writes (target). They
-- differ while a new embedder's collection is built: the active one keeps serving until the target
-- is complete, then the switch is one UPDATE (docs/architecture.md, Search).
CREATE TABLE search_state (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    active_class text        NOT NULL,
    target_class text        NOT NULL,
    switched_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON search_state TO atlas_projector;
GRANT SELECT ON search_state TO atlas_api;

-- +goose Down
DROP TABLE search_state;
