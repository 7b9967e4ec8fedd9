-- The outbox (tables: sql/005_trips.sql, sql/006_events.sql): an event of a
-- trip outside a transition, and the relay's lease.
--
-- Events in the envelope of the event schemas are written in the same
-- transaction as the state they report; a relay (src/events/relay.c)
-- publishes them in id order and stamps published_at. (aggregate_id,
-- aggregate_seq) orders one trip's events without gaps: trips.event_seq is
-- the last one taken. The state machine (40_trip_apply.sql) and the ride
-- requests (40_trip_request.sql) write their outbox rows with one INSERT
-- per batch; this is for the single events the others report.

-- An event of a trip outside a transition (match.rejected, rating.submitted):
-- takes the trip's next sequence number. Returns it.
CREATE OR REPLACE FUNCTION trip_emit(t trips, etype text, payload jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    seq integer;
BEGIN
    UPDATE trips SET event_seq = event_seq + 1 WHERE id = t.id RETURNING event_seq INTO seq;
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES (etype, 'ridehaild', t.id, t.id, seq, payload);
    RETURN seq;
END
$$;

-- Daemons sharing one database elect one publisher at a time: the holder of
-- the lease (outbox_relay_lease), renewed by every claim. The claim itself
-- is one statement that renews the lease and returns the next batch only to
-- its holder, so two relays never publish the same rows at once. Should an
-- old holder be so slow that its lease expires mid-batch, the rows it sends
-- again carry the same Nats-Msg-Id (the event_id) and JetStream drops the
-- duplicates.
--
-- true when p_holder holds the lease (taking it if free or expired). A
-- holder with more than half its time left only reads, so an idle relay
-- polling the outbox writes nothing.
CREATE OR REPLACE FUNCTION outbox_relay_claim(p_holder text, p_ttl_ms integer) RETURNS boolean LANGUAGE plpgsql AS $$
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
