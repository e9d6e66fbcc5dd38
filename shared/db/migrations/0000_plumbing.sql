-- Delivery plumbing every service schema carries: inbox, outbox, dead letters.

-- Inbox: one row per consumed event, written in the same transaction as its effect,
-- so a redelivered event is recognised and has no second effect.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('processed', 'dead_lettered')),
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Outbox: events to publish, written in the same transaction as the state change that
-- caused them, then relayed to Kafka by the service itself.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    topic        text        NOT NULL,
    key          bytea,
    value        bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    event_id     uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Dead letters: messages that failed their bounded retries, with the original bytes and
-- headers; the same record goes to the dead-letter topic through the outbox.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    event_id    uuid,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL,
    error_type  text        NOT NULL,
    error       text        NOT NULL,
    attempts    integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    UNIQUE (consumer, topic, partition, "offset")
);

-- Wake the relay as soon as a transaction adds outbox rows (once per statement).
CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();
