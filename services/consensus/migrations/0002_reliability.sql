-- Annotator reliability as additive statistics shared by every consensus instance.

-- Every reliability delta an item's decision produced, append-only. xid orders deltas by
-- the transaction that wrote them, so a reader folds exactly the committed ones.
CREATE TABLE reliability_deltas (
    id         bigserial   PRIMARY KEY,
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    item_id    text        NOT NULL,
    delta      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reliability_deltas_xid ON reliability_deltas (xid);

-- Snapshots of the folded counts; a decision names the one it used by its version.
CREATE TABLE reliability_snapshots (
    version    text        PRIMARY KEY,
    snapshot   jsonb       NOT NULL,
    horizon    xid8        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reliability_snapshots_recent ON reliability_snapshots (created_at DESC);
