-- +goose Up
-- The permission projection: who may do what on which resource, derived from ownership, membership
-- and visibility events. A check is one primary-key lookup, a filtered list one join.
-- principal_id is a user, or the "anyone signed in" principal (all zeros) for public resources.
CREATE TABLE permissions (
    principal_id  uuid   NOT NULL,
    resource_id   uuid   NOT NULL,
    resource_type text   NOT NULL,
    permission    text   NOT NULL CHECK (permission IN ('read', 'write', 'manage')),
    PRIMARY KEY (principal_id, permission, resource_id)
);
CREATE INDEX permissions_resource_idx ON permissions (resource_id);

-- +goose Down
DROP TABLE permissions;
