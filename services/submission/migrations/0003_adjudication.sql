-- Adjudication: the kind of each assignment, assignment cancellations, and the role and
-- rationale of every stored label (an adjudicator's decision keeps what they signed).

ALTER TABLE assignments ADD COLUMN kind text NOT NULL DEFAULT 'label';

-- assignment.cancelled events (assignments.issued.v1); a cancellation may be stored before
-- the assignment it names, so it has its own table.
CREATE TABLE assignment_cancellations (
    assignment_id uuid        PRIMARY KEY,
    item_id       text        NOT NULL,
    task_id       text        NOT NULL,
    annotator_id  text        NOT NULL,
    reason        text        NOT NULL,
    cancelled_at  timestamptz NOT NULL
);

ALTER TABLE labels
    ADD COLUMN role         text  NOT NULL DEFAULT 'reader',
    ADD COLUMN adjudication jsonb,
    ADD CONSTRAINT labels_adjudicator_rationale
        CHECK ((role = 'adjudicator') = (adjudication IS NOT NULL) OR retraction);
