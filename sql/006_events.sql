-- 006: the outbox relay (src/events).
--
-- Daemons sharing one database elect one publisher at a time: the holder of
-- the lease below, renewed by every claim (outbox_relay_claim(),
-- sql/functions/20_outbox.sql).
--
-- Its text up to schema version 11 also defined functions; their bodies
-- now live in sql/functions/. The schema it makes is the same, so a
-- database that recorded that text is at this migration:
-- was-checksum: 1a773989d1b6ae6a

CREATE TABLE outbox_relay_lease (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Webhook deliveries given up after webhooks.max_attempts (src/events/webhook.c):
-- what, to whom, and the last error, for an operator to replay or drop.
CREATE TABLE webhook_dead_letters (
    id         bigserial PRIMARY KEY,
    endpoint   text NOT NULL,
    event_id   uuid NOT NULL,
    event_type text NOT NULL,
    attempts   integer NOT NULL,
    last_error text NOT NULL,
    body       jsonb NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
