-- The topic prefix of the deployment that registered an item. Deployments that share a
-- database under different prefixes (test sessions side by side) sweep only their own.
ALTER TABLE items ADD COLUMN namespace text NOT NULL DEFAULT '';
