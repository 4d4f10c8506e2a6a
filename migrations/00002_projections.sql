-- +goose Up
-- Consumer-group checkpoints, in the shape watermill-sql's PostgreSQL offsets adapter reads and writes:
-- the last acknowledged (transaction_id, global_position) of each projector's consumer group.
CREATE TABLE projection_offsets (
    consumer_group                varchar(255) PRIMARY KEY,
    offset_acked                  bigint,
    last_processed_transaction_id xid8 NOT NULL
);

-- What admins see of each projector: live, rebuilding or failed, and why.
CREATE TABLE projector_status (
    name             text        PRIMARY KEY,
    version          integer     NOT NULL,
    status           text        NOT NULL CHECK (status IN ('live', 'rebuilding', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    failed_position  bigint,
    failed_event_type text,
    last_error       text,
    rebuild_target_transaction_id xid8,
    rebuild_target_position bigint,
    rebuild_started_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE projector_status;
DROP TABLE projection_offsets;
