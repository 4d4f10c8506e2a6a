-- +goose Up
-- Database roles and row-level security (docs/architecture.md, "Row-level security").
--
-- atlas_api is what the HTTP API runs as: it appends events, keeps credentials (sessions, reservations,
-- idempotency keys, subject keys) and only reads read models, and only the rows of the tenants named
-- in its transaction (atlas_enter). atlas_projector is what projectors run as: it reads the log and
-- owns the read models' rows. The role running migrations owns the tables; FORCE ROW LEVEL SECURITY
-- holds it to the policies too, and it has none, so a read model queried as the owner is empty.
-- Roles belong to the cluster, not to one database: several databases (tests, several installations)
-- share them, and creating them tolerates a concurrent creation by another database's migration.

-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['atlas_api', 'atlas_projector'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
        -- The migrating role must be able to SET ROLE to it (superusers always can).
        IF NOT pg_has_role(current_user, r, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', r, current_user);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- The request's tenant context. atlas.user_id is the signed-in user; atlas.tenants is that user and
-- every organization they belong to. Both are transaction-local (set_config(..., true)), so a pooled
-- connection never carries one request's context into the next. Unset means no tenant: empty.
-- +goose StatementBegin
CREATE FUNCTION atlas_user() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('atlas.user_id', true), '')::uuid
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION atlas_tenants() RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_to_array(nullif(current_setting('atlas.tenants', true), ''), ',')::uuid[], '{}')
$$;
-- +goose StatementEnd

-- atlas_enter sets the tenant context for the rest of the current transaction: the user, then their
-- organizations, read under the org_members policy that lets a user see their own memberships.
-- +goose StatementBegin
CREATE FUNCTION atlas_enter(viewer uuid) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF viewer IS NULL OR viewer = '00000000-0000-0000-0000-000000000000' THEN
        RAISE EXCEPTION 'atlas_enter needs a user id';
    END IF;
    PERFORM set_config('atlas.user_id', viewer::text, true);
    PERFORM set_config('atlas.tenants', (
        SELECT string_agg(t::text, ',') FROM (
            SELECT viewer AS t
            UNION
            SELECT org_id FROM org_members WHERE user_id = viewer) x), true);
END
$$;
-- +goose StatementEnd

-- Write side and credentials: addressed by stream, hash or key, never listed by tenant.
GRANT SELECT, INSERT ON events TO atlas_api;
GRANT SELECT ON events TO atlas_projector;
GRANT SELECT, INSERT, DELETE ON reservations, idempotency_keys TO atlas_api;
GRANT SELECT, INSERT, UPDATE ON subject_keys TO atlas_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, api_key_usage TO atlas_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_offsets, projector_status TO atlas_projector;
GRANT SELECT ON projection_offsets, projector_status TO atlas_api;

-- Read models: the projector writes them, the API reads them through the policies below.
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON users, spaces, space_members, permissions, orgs, org_members,
    org_invitations, api_keys, perm_org_members, perm_org_spaces, perm_space_members TO atlas_projector;
GRANT SELECT ON users, spaces, space_members, permissions, orgs, org_members, org_invitations, api_keys TO atlas_api;

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
ALTER TABLE spaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE spaces FORCE ROW LEVEL SECURITY;
ALTER TABLE space_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE space_members FORCE ROW LEVEL SECURITY;
ALTER TABLE permissions ENABLE ROW LEVEL SECURITY;
ALTER TABLE permissions FORCE ROW LEVEL SECURITY;
ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
ALTER TABLE org_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_members FORCE ROW LEVEL SECURITY;
ALTER TABLE org_invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_invitations FORCE ROW LEVEL SECURITY;
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE perm_org_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE perm_org_members FORCE ROW LEVEL SECURITY;
ALTER TABLE perm_org_spaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE perm_org_spaces FORCE ROW LEVEL SECURITY;
ALTER TABLE perm_space_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE perm_space_members FORCE ROW LEVEL SECURITY;

-- Policies apply to every member of their role, and the migrating role is a member of both (to SET
-- ROLE to them): the projector's policy also checks that the projector role is the current one, so
-- that the owner does not inherit it.
CREATE POLICY projector ON users TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON spaces TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON space_members TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON permissions TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON orgs TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON org_members TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON org_invitations TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON api_keys TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON perm_org_members TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON perm_org_spaces TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');
CREATE POLICY projector ON perm_space_members TO atlas_projector USING (current_user = 'atlas_projector') WITH CHECK (current_user = 'atlas_projector');

-- The API's policies: a row is visible when it belongs to one of the context's tenants. The exceptions
-- cross a tenant boundary only where the permission projection already grants it: a space shared with
-- the user (space membership) or public to anyone signed in, the members of such a space, and the
-- users the caller shares an organization with or who are members of a space the caller may read in
-- their own name (not merely as anyone signed in).
CREATE POLICY tenant ON orgs FOR SELECT TO atlas_api
    USING (id = ANY (atlas_tenants()));
CREATE POLICY tenant ON org_members FOR SELECT TO atlas_api
    USING (org_id = ANY (atlas_tenants()) OR user_id = atlas_user());
CREATE POLICY tenant ON org_invitations FOR SELECT TO atlas_api
    USING (org_id = ANY (atlas_tenants()));
CREATE POLICY tenant ON api_keys FOR SELECT TO atlas_api
    USING (user_id = atlas_user());
CREATE POLICY tenant ON permissions FOR SELECT TO atlas_api
    USING (principal_id = atlas_user()
        OR (principal_id = '00000000-0000-0000-0000-000000000000' AND atlas_user() IS NOT NULL));
CREATE POLICY tenant ON spaces FOR SELECT TO atlas_api
    USING (coalesce(org_id, owner_user_id) = ANY (atlas_tenants())
        OR EXISTS (SELECT 1 FROM permissions p WHERE p.resource_id = spaces.id AND p.permission = 'read'));
CREATE POLICY tenant ON space_members FOR SELECT TO atlas_api
    USING (EXISTS (SELECT 1 FROM spaces s WHERE s.id = space_members.space_id));
CREATE POLICY tenant ON users FOR SELECT TO atlas_api
    USING (id = atlas_user()
        OR EXISTS (SELECT 1 FROM org_members m WHERE m.user_id = users.id AND m.org_id = ANY (atlas_tenants()))
        OR EXISTS (SELECT 1 FROM space_members m JOIN permissions p ON p.resource_id = m.space_id
            WHERE m.user_id = users.id AND p.principal_id = atlas_user() AND p.permission = 'read'));

-- +goose Down
DROP POLICY tenant ON users;
DROP POLICY tenant ON space_members;
DROP POLICY tenant ON spaces;
DROP POLICY tenant ON permissions;
DROP POLICY tenant ON api_keys;
DROP POLICY tenant ON org_invitations;
DROP POLICY tenant ON org_members;
DROP POLICY tenant ON orgs;
DROP POLICY projector ON users;
DROP POLICY projector ON spaces;
DROP POLICY projector ON space_members;
DROP POLICY projector ON permissions;
DROP POLICY projector ON orgs;
DROP POLICY projector ON org_members;
DROP POLICY projector ON org_invitations;
DROP POLICY projector ON api_keys;
DROP POLICY projector ON perm_org_members;
DROP POLICY projector ON perm_org_spaces;
DROP POLICY projector ON perm_space_members;
ALTER TABLE users NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE spaces NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE space_members NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE permissions NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE orgs NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE org_members NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE org_invitations NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE perm_org_members NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE perm_org_spaces NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
ALTER TABLE perm_space_members NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON users, spaces, space_members, permissions, orgs, org_members, org_invitations, api_keys,
    perm_org_members, perm_org_spaces, perm_space_members, events, reservations, idempotency_keys,
    subject_keys, sessions, api_key_usage, projection_offsets, projector_status FROM atlas_api, atlas_projector;
DROP FUNCTION atlas_enter(uuid);
DROP FUNCTION atlas_tenants();
DROP FUNCTION atlas_user();
-- The roles stay: other databases on the server may use them.
