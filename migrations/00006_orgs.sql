-- +goose Up
-- Read models of the orgs projector.
CREATE TABLE orgs (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    slug       text        NOT NULL,
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE org_members (
    org_id    uuid        NOT NULL,
    user_id   uuid        NOT NULL,
    role      text        NOT NULL,
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_idx ON org_members (user_id, org_id);

-- Pending invitations (accepted and revoked ones leave this table). email is decrypted personal data.
CREATE TABLE org_invitations (
    id         uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    email      text        NOT NULL,
    role       text        NOT NULL,
    invited_by uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX org_invitations_org_idx ON org_invitations (org_id, id);

-- +goose Down
DROP TABLE org_invitations;
DROP TABLE org_members;
DROP TABLE orgs;
