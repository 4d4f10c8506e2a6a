-- +goose Up
-- The permission projector's own copy of what it needs to fan organization roles out to organization
-- spaces (projectors never read each other's tables: they progress independently).
CREATE TABLE perm_org_members (
    org_id  uuid NOT NULL,
    user_id uuid NOT NULL,
    role    text NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE perm_org_spaces (
    space_id   uuid PRIMARY KEY,
    org_id     uuid NOT NULL,
    visibility text NOT NULL
);
CREATE INDEX perm_org_spaces_org_idx ON perm_org_spaces (org_id);

-- +goose Down
DROP TABLE perm_org_spaces;
DROP TABLE perm_org_members;
