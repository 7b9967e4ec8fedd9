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
