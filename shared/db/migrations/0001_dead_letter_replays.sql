-- Who re-drove a dead letter, when, and why: a dead letter is replayed, never deleted.
ALTER TABLE dead_letters ADD COLUMN replayed_by text;
ALTER TABLE dead_letters ADD COLUMN replay_note text;
ALTER TABLE dead_letters ADD COLUMN replay_count integer NOT NULL DEFAULT 0;
