-- Assignment owns items, annotators and the assignments (leases) it issues.

CREATE TABLE tasks (
    task_id    text    NOT NULL,
    version    integer NOT NULL,
    definition jsonb   NOT NULL,
    PRIMARY KEY (task_id, version)
);

CREATE TABLE annotators (
    annotator_id text        NOT NULL,
    task_id      text        NOT NULL,
    role         text        NOT NULL DEFAULT 'reader' CHECK (role IN ('reader', 'adjudicator')),
    active       boolean     NOT NULL DEFAULT true,
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (annotator_id, task_id)
);

CREATE TABLE items (
    item_id       text        PRIMARY KEY,
    task_id       text        NOT NULL,
    case_ref      text        NOT NULL,
    priority      integer     NOT NULL,
    site          text,
    status        text        NOT NULL,
    registered_at timestamptz NOT NULL
);
CREATE INDEX items_waiting ON items (task_id) WHERE status = 'waiting_for_task';

CREATE TABLE assignments (
    assignment_id    uuid        PRIMARY KEY,
    item_id          text        NOT NULL REFERENCES items (item_id),
    task_id          text        NOT NULL,
    annotator_id     text        NOT NULL,
    issued_at        timestamptz NOT NULL,
    lease_expires_at timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'open',
    -- An annotator never labels the same item twice.
    UNIQUE (item_id, annotator_id)
);
CREATE INDEX assignments_open_by_annotator ON assignments (annotator_id) WHERE status = 'open';

CREATE TABLE unfilled_requests (
    id           bigserial   PRIMARY KEY,
    item_id      text        NOT NULL,
    reason       text        NOT NULL,
    requested_at timestamptz NOT NULL
);
