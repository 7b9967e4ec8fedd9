-- 008: reading a trip and requesting one without a plan per call.
--
-- trip_json() as PL/pgSQL again, but with the driver read into a row first
-- (a primary-key lookup whose plan does not depend on the id, so it is
-- cached) and the trip built by trip_view(), a simple expression; the
-- timeline only when asked for. trip_request() answers with trip_view() of
-- the new trip (it has no driver) and writes its outbox rows with plain
-- INSERTs, as trip_step() does (sql/007): the history row and both outbox
-- rows in one statement.

CREATE OR REPLACE FUNCTION trip_json(t trips, with_timeline boolean) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    d drivers;
    tl jsonb;
BEGIN
    IF t.driver_id IS NOT NULL THEN
        SELECT * INTO d FROM drivers WHERE id = t.driver_id;
    END IF;
    IF NOT with_timeline THEN
        RETURN trip_view(t, d);
    END IF;
    SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'seq', e.seq, 'from', e.from_state, 'to', e.to_state, 'at', rh_ts(e.at), 'by', e.actor_role))
           ORDER BY e.seq)
      INTO tl FROM trip_events e WHERE e.trip_id = t.id;
    RETURN trip_view(t, d) || jsonb_strip_nulls(jsonb_build_object('timeline', tl));
END
$$;

CREATE OR REPLACE FUNCTION trip_request(p_rider uuid, p_key text, p_body_hash text, p_vehicle text,
                             p_pickup_lat double precision, p_pickup_lng double precision,
                             p_dropoff_lat double precision, p_dropoff_lng double precision,
                             p_pickup_address text, p_dropoff_address text,
                             p_currency text, p_quote_id text, p_fare jsonb, p_policy jsonb,
                             OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    t trips;
BEGIN
    SELECT x.status, x.body INTO status, body FROM trip_request_refusal(p_rider, p_key, p_body_hash) x;
    IF status IS NOT NULL THEN
        RETURN;
    END IF;
    BEGIN
        INSERT INTO trips (id, rider_id, vehicle_type, pickup, dropoff, pickup_address, dropoff_address,
                           currency, quote_id, fare_quoted, estimate, policy, event_seq)
        VALUES (gen_random_uuid(), p_rider, p_vehicle,
                ST_SetSRID(ST_MakePoint(p_pickup_lng, p_pickup_lat), 4326)::geography,
                ST_SetSRID(ST_MakePoint(p_dropoff_lng, p_dropoff_lat), 4326)::geography,
                p_pickup_address, p_dropoff_address, p_currency, p_quote_id, (p_fare->>'total')::bigint,
                p_fare, p_policy, 2)
        RETURNING * INTO t;
        IF p_key IS NOT NULL THEN
            INSERT INTO ride_idempotency (rider_id, key, body_hash, trip_id) VALUES (p_rider, p_key, p_body_hash, t.id);
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- A concurrent request won the race (on the idempotency key, or on
        -- the one-active-trip index): it has committed by now, and this
        -- statement sees it. The same key is answered as that request was.
        SELECT x.status, x.body INTO status, body FROM trip_request_refusal(p_rider, p_key, p_body_hash) x;
        IF status IS NULL THEN -- the other trip ended meanwhile: still this request lost the race
            status := 409;
            body := jsonb_build_object('reason', 'active_trip', 'active_trip_id', NULL);
        END IF;
        RETURN;
    END;
    -- the history row and both outbox rows in one statement
    WITH e AS (INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at)
               VALUES (t.id, t.version, NULL, 'SEARCHING', 'rider', p_rider::text, t.requested_at))
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES ('trip.requested', 'ridehaild', t.id, t.id, 1, jsonb_build_object(
        'trip_id', t.id, 'passenger_id', t.rider_id,
        'pickup_location', rh_latlon(t.pickup), 'dropoff_location', rh_latlon(t.dropoff),
        'requested_at', rh_ts(t.requested_at), 'vehicle_type', t.vehicle_type,
        'fare', rh_money(t.fare_quoted, t.currency))),
           ('price.calculated', 'ridehaild', t.id, t.id, 2, jsonb_build_object(
        'trip_id', t.id, 'kind', 'upfront',
        'base_fare', round((p_fare->>'base')::numeric / 100, 2),
        'distance_fare', round((p_fare->>'distance')::numeric / 100, 2),
        'time_fare', round((p_fare->>'time')::numeric / 100, 2),
        'booking_fee', round((p_fare->>'booking_fee')::numeric / 100, 2),
        'surge_multiplier', (p_fare->>'surge_multiplier')::numeric,
        'total_fare', round(t.fare_quoted / 100.0, 2), 'currency', t.currency));
    status := 201;
    body := trip_view(t, NULL); -- no driver yet
END
$$;

