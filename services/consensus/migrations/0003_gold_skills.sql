-- Gold items (their known answer, from items.registered.v1) and per-annotator label counts
-- with the skill estimate last published on annotators.skill.v1.

CREATE TABLE gold_items (
    item_id    text  PRIMARY KEY,
    task_id    text  NOT NULL,
    gold_value jsonb NOT NULL
);

CREATE TABLE annotator_skill (
    annotator_id          text             NOT NULL,
    task_id               text             NOT NULL,
    labels                bigint           NOT NULL DEFAULT 0,
    gold_labels           bigint           NOT NULL DEFAULT 0,
    gold_correct          bigint           NOT NULL DEFAULT 0,
    published_labels      bigint,
    published_skill       double precision,
    published_gold_accuracy double precision,
    published_at          timestamptz,
    PRIMARY KEY (annotator_id, task_id)
);
