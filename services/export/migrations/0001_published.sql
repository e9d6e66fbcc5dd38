-- Export owns the published, versioned consensus labels.

CREATE TABLE published (
    item_id      text        NOT NULL,
    version      integer     NOT NULL,
    payload      jsonb       NOT NULL,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (item_id, version)
);
