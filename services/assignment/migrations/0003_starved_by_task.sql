-- An answered assignment frees a reader's slot on its task: that task's starved items are
-- looked up at once.
CREATE INDEX items_starved_by_task ON items (task_id, priority DESC, registered_at)
    WHERE starved;
