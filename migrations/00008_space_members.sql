-- +goose Up
-- Space members, read model of the spaces projector.
CREATE TABLE space_members (
    space_id uuid        NOT NULL,
    user_id  uuid        NOT NULL,
    role     text        NOT NULL,
    added_at timestamptz NOT NULL,
    PRIMARY KEY (space_id, user_id)
);

-- The permission projector's own copy of space membership.
CREATE TABLE perm_space_members (
    space_id uuid NOT NULL,
    user_id  uuid NOT NULL,
    role     text NOT NULL,
    PRIMARY KEY (space_id, user_id)
);
CREATE INDEX perm_space_members_user_idx ON perm_space_members (user_id);

-- +goose Down
DROP TABLE perm_space_members;
DROP TABLE space_members;
