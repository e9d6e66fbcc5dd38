-- Consensus owns per-item state, the task policies it applies, and every decision.

CREATE TABLE tasks (
    task_id    text    NOT NULL,
    version    integer NOT NULL,
    definition jsonb   NOT NULL,
    PRIMARY KEY (task_id, version)
);

CREATE TABLE item_state (
    item_id           text        PRIMARY KEY,
    task_id           text        NOT NULL,
    task_version      integer     NOT NULL,
    state             jsonb       NOT NULL,
    status            text        NOT NULL,
    consensus_version integer     NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX item_state_waiting ON item_state (task_id) WHERE status = 'waiting_for_task';

-- Every decision taken, with the record that lets it be replayed; append-only.
CREATE TABLE decisions (
    id         bigserial   PRIMARY KEY,
    item_id    text        NOT NULL,
    outcome    text        NOT NULL,
    record     jsonb       NOT NULL,
    decided_at timestamptz NOT NULL
);
CREATE INDEX decisions_item ON decisions (item_id, id);
