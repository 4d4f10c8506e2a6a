-- +goose Up
-- Erasure (docs/operations.md, "Erasing a user").
--
-- The users read model keeps an erased user's row as a tombstone: name and email read "[erased]" and
-- erased_at says when, so ids in other read models and in history still resolve to "someone erased".
ALTER TABLE users ADD COLUMN erased_at timestamptz;

-- Erasure finds every stream that refers to a user: the organizations they created or joined, the
-- spaces they were added to, their API keys, and the invitations sent to their email (by its
-- digest). Partial indexes over those event types only, so other appends do not pay for them.
CREATE INDEX events_user_ref_idx ON events ((data->>'user_id'))
    WHERE event_type IN ('org.member_joined', 'space.member_added', 'api_key.created');
CREATE INDEX events_org_owner_idx ON events ((data->>'owner_id')) WHERE event_type = 'org.created';
CREATE INDEX events_invitee_idx ON events ((data->>'email_digest')) WHERE event_type = 'org.member_invited';

-- +goose Down
DROP INDEX events_invitee_idx;
DROP INDEX events_org_owner_idx;
DROP INDEX events_user_ref_idx;
ALTER TABLE users DROP COLUMN erased_at;
