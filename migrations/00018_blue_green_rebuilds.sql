-- +goose Up
-- Blue/green rebuilds (projections/rebuild.go): a projector's live tables are those of its live
-- consumer group; a rebuild fills copies under its own consumer group (shadow_group), of the version
-- shadow_version, and is swapped in when it has caught up. generation numbers the rebuilds.
ALTER TABLE projector_status
    ADD COLUMN live_group     text,
    ADD COLUMN shadow_group   text,
    ADD COLUMN shadow_version integer,
    ADD COLUMN generation     integer NOT NULL DEFAULT 0;
UPDATE projector_status SET live_group = name || '_v' || version;
ALTER TABLE projector_status ALTER COLUMN live_group SET NOT NULL;

-- +goose Down
ALTER TABLE projector_status DROP COLUMN generation, DROP COLUMN shadow_version, DROP COLUMN shadow_group,
    DROP COLUMN live_group;
