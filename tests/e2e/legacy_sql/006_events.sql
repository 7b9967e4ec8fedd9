-- The outbox relay (src/events).
--
-- Daemons sharing one database elect one publisher at a time: the holder of
-- the lease below, renewed by every claim. The claim itself is one statement
-- that renews the lease and returns the next batch only to its holder, so two
-- relays never publish the same rows at once. Should an old holder be so slow
-- that its lease expires mid-batch, the rows it sends again carry the same
-- Nats-Msg-Id (the event_id) and JetStream drops the duplicates.

CREATE TABLE outbox_relay_lease (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- true when p_holder holds the lease (taking it if free or expired). A
-- holder with more than half its time left only reads, so an idle relay
-- polling the outbox writes nothing.
CREATE FUNCTION outbox_relay_claim(p_holder text, p_ttl_ms integer) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    l outbox_relay_lease;
BEGIN
    SELECT * INTO l FROM outbox_relay_lease WHERE name = 'outbox';
    IF FOUND AND l.holder = p_holder AND l.expires_at > now() + make_interval(secs => p_ttl_ms / 2000.0) THEN
        RETURN true;
    END IF;
    IF FOUND AND l.holder <> p_holder AND l.expires_at > now() THEN
        RETURN false;
    END IF;
    -- Two relays racing here are serialized by the row lock; the loser
    -- re-checks the winner's row and updates nothing.
    INSERT INTO outbox_relay_lease AS x (name, holder, expires_at)
    VALUES ('outbox', p_holder, now() + make_interval(secs => p_ttl_ms / 1000.0))
    ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
     WHERE x.holder = EXCLUDED.holder OR x.expires_at < now();
    RETURN FOUND;
END
$$;

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
