-- Signed ingress: front-end clients and their keys, live assignments, full provenance,
-- retractions as revisions, labels parked until their assignment arrives.

-- Front-end clients. A key's secret is derived from the service's master key and the
-- key's salt (shared/signing.py: derive_secret); the database never holds a secret.
CREATE TABLE clients (
    client_id      text        PRIMARY KEY,
    description    text        NOT NULL DEFAULT '',
    -- true: the client may speak for every annotator (an institution's own viewer).
    all_annotators boolean     NOT NULL DEFAULT false,
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE client_annotators (
    client_id    text        NOT NULL REFERENCES clients (client_id),
    annotator_id text        NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, annotator_id)
);

CREATE TABLE client_keys (
    key_id      text        PRIMARY KEY,
    client_id   text        NOT NULL REFERENCES clients (client_id),
    salt        text        NOT NULL,
    fingerprint text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A rotated key keeps working until expires_at; a revoked one stops at once.
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX client_keys_client ON client_keys (client_id);

-- Assignments as the assignment service issued them (assignments.issued.v1).
CREATE TABLE assignments (
    assignment_id    uuid        PRIMARY KEY,
    item_id          text        NOT NULL,
    task_id          text        NOT NULL,
    annotator_id     text        NOT NULL,
    issued_at        timestamptz NOT NULL,
    lease_expires_at timestamptz NOT NULL
);
CREATE INDEX assignments_item_annotator ON assignments (item_id, annotator_id);

-- Image size of items whose boxes are in pixels.
ALTER TABLE items ADD COLUMN image_width double precision, ADD COLUMN image_height double precision;

-- Provenance of every stored revision, and retractions (revisions without a value).
ALTER TABLE labels
    ALTER COLUMN value DROP NOT NULL,
    ADD COLUMN retraction        boolean     NOT NULL DEFAULT false,
    ADD COLUMN superseded        boolean     NOT NULL DEFAULT false,
    ADD COLUMN guideline_version text,
    ADD COLUMN key_id            text,
    ADD COLUMN signed_at         timestamptz,
    ADD COLUMN published_at      timestamptz,
    ADD COLUMN source_topic      text,
    ADD COLUMN source_partition  integer,
    ADD COLUMN source_offset     bigint,
    ADD COLUMN comment           text,
    ADD CONSTRAINT labels_value_or_retraction CHECK (retraction OR value IS NOT NULL);
CREATE INDEX labels_annotation ON labels (annotation_id, revision);

-- The revision of each annotation that counts: the highest; a retraction removes it.
CREATE VIEW current_labels AS
SELECT * FROM (
    SELECT DISTINCT ON (annotation_id) *
      FROM labels ORDER BY annotation_id, revision DESC
) latest WHERE NOT retraction;

ALTER TABLE rejections
    ADD COLUMN key_id       text,
    ADD COLUMN raw_redacted boolean NOT NULL DEFAULT false;

-- Labels waiting for the assignment they claim (an assignment and its label travel on
-- different topics, so the label can overtake it). A sweeper rejects what waits too long.
CREATE TABLE parked_labels (
    event_id     uuid        PRIMARY KEY,
    item_id      text        NOT NULL,
    annotator_id text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    key          bytea,
    value        bytea       NOT NULL,
    headers      jsonb       NOT NULL,
    timestamp_ms bigint      NOT NULL,
    parked_at    timestamptz NOT NULL
);
CREATE INDEX parked_labels_wait ON parked_labels (item_id, annotator_id);
CREATE INDEX parked_labels_age ON parked_labels (parked_at);
