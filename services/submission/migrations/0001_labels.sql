-- Submission owns task versions, the items it may accept labels for, and raw labels.

CREATE TABLE tasks (
    task_id    text        NOT NULL,
    version    integer     NOT NULL,
    definition jsonb       NOT NULL,
    defined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, version)
);

CREATE TABLE items (
    item_id       text        PRIMARY KEY,
    task_id       text        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- Every label revision ever accepted; never updated or deleted.
CREATE TABLE labels (
    label_id      uuid        PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    annotation_id uuid        NOT NULL,
    revision      integer     NOT NULL,
    item_id       text        NOT NULL,
    task_id       text        NOT NULL,
    task_version  integer     NOT NULL,
    annotator_id  text        NOT NULL,
    client_id     text        NOT NULL,
    assignment_id uuid,
    value         jsonb       NOT NULL,
    labeled_at    timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    time_spent_ms integer,
    raw_sha256    text        NOT NULL,
    UNIQUE (annotation_id, revision)
);
CREATE INDEX labels_item ON labels (item_id);

-- Every rejected label event, with its original bytes, so nothing is lost.
CREATE TABLE rejections (
    id          bigserial   PRIMARY KEY,
    event_id    uuid,
    code        text        NOT NULL,
    message     text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    raw         bytea       NOT NULL,
    raw_sha256  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER labels_append_only BEFORE UPDATE OR DELETE ON labels
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
CREATE TRIGGER rejections_append_only BEFORE UPDATE OR DELETE ON rejections
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
