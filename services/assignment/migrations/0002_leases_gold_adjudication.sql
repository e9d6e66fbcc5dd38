-- Rules, leases, gold items, skills and adjudication queues (docs/ASSIGNMENT.md).

-- Who an annotator is for a task: their site (conflict of interest), their adjudication
-- tier and specialty, and an optional personal concurrency cap.
ALTER TABLE annotators
    ADD COLUMN site      text,
    ADD COLUMN tier      integer NOT NULL DEFAULT 1 CHECK (tier >= 1),
    ADD COLUMN specialty text    NOT NULL DEFAULT 'general',
    ADD COLUMN max_open  integer CHECK (max_open >= 1);

-- wanted: how many label assignments the item should have (its initial overlap, raised by
-- consensus's requests); starved: it has fewer and waits for an eligible reader.
-- status: waiting_for_task | open | contested | decided | gold.
ALTER TABLE items
    ADD COLUMN gold    boolean NOT NULL DEFAULT false,
    ADD COLUMN wanted  integer NOT NULL DEFAULT 0,
    ADD COLUMN starved boolean NOT NULL DEFAULT false;
CREATE INDEX items_gold_pool ON items (task_id) WHERE gold;
CREATE INDEX items_starved ON items (priority DESC, registered_at) WHERE starved;

-- status: open | answered | expired | declined | cancelled (and 'closed', written before
-- leases ended with a reason). Only open rows hold a lease.
ALTER TABLE assignments
    ADD COLUMN kind       text    NOT NULL DEFAULT 'label'
        CHECK (kind IN ('label', 'adjudication')),
    ADD COLUMN tier       integer,
    ADD COLUMN gold       boolean NOT NULL DEFAULT false,
    ADD COLUMN ended_at   timestamptz,
    ADD COLUMN end_reason text;
CREATE INDEX assignments_open_leases ON assignments (lease_expires_at) WHERE status = 'open';
CREATE INDEX assignments_by_annotator_task ON assignments (annotator_id, task_id);

-- The latest skill estimate consensus published per annotator and task.
CREATE TABLE skills (
    annotator_id  text             NOT NULL,
    task_id       text             NOT NULL,
    skill         double precision,
    labels        integer          NOT NULL,
    gold_labels   integer          NOT NULL,
    gold_accuracy double precision,
    estimated_at  timestamptz      NOT NULL,
    PRIMARY KEY (annotator_id, task_id)
);

-- One entry per contested item, in the queue of its task's specialty.
-- status: waiting (for an adjudicator) | assigned | answered | closed.
CREATE TABLE adjudication_queue (
    item_id       text        PRIMARY KEY REFERENCES items (item_id),
    task_id       text        NOT NULL,
    specialty     text        NOT NULL,
    priority      integer     NOT NULL,
    tier          integer     NOT NULL DEFAULT 1,
    enqueued_at   timestamptz NOT NULL,
    due_at        timestamptz NOT NULL,
    evidence      jsonb       NOT NULL,
    status        text        NOT NULL DEFAULT 'waiting',
    assignment_id uuid,
    breached_at   timestamptz,
    closed_at     timestamptz
);
CREATE INDEX adjudication_waiting
    ON adjudication_queue (task_id, specialty, tier, priority DESC, enqueued_at)
    WHERE status = 'waiting';
CREATE INDEX adjudication_due
    ON adjudication_queue (due_at) WHERE status IN ('waiting', 'assigned') AND breached_at IS NULL;
