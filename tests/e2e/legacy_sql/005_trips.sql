-- 005: trips, their history, ratings, idempotency keys and the outbox.
--
-- The trip state machine lives here, in one place: trip_transition() is the
-- only code that changes a trip's state. Each call is one transaction that
-- updates the trip on (state, version), appends a trip_events row and the
-- outbox rows that report it, and moves the driver's status and version.
-- The daemon (src/trip) validates input and calls these functions; the
-- matcher calls the same ones. Constraints, not only code, hold the rules:
-- one active trip per rider and per driver (partial unique indexes), legal
-- states (CHECK), money in integer minor units.

CREATE TABLE trips (
    id                uuid PRIMARY KEY,
    rider_id          uuid NOT NULL REFERENCES riders (id),
    driver_id         uuid REFERENCES drivers (id),
    state             text NOT NULL DEFAULT 'SEARCHING'
                      CHECK (state IN ('SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED')),
    version           integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    event_seq         integer NOT NULL DEFAULT 0 CHECK (event_seq >= 0), -- last outbox aggregate_seq
    vehicle_type      text NOT NULL CHECK (length(vehicle_type) BETWEEN 1 AND 31), -- a configured tariff
    pickup            geography(Point, 4326) NOT NULL,
    dropoff           geography(Point, 4326) NOT NULL,
    pickup_address    text CHECK (length(pickup_address) <= 200),
    dropoff_address   text CHECK (length(dropoff_address) <= 200),
    currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- the upfront price, honoured at completion (minor units)
    quote_id          text CHECK (length(quote_id) <= 400),
    fare_quoted       bigint NOT NULL CHECK (fare_quoted >= 0),
    -- estimate and tariff as quoted: {base, distance, time, surge_multiplier,
    -- minimum, booking_fee, total, per_km, per_min, distance_m, duration_s, method}
    estimate          jsonb NOT NULL,
    -- the cancellation and fare rules in force when the trip was requested
    policy            jsonb NOT NULL,
    fare_final        bigint CHECK (fare_final >= 0),
    fare_metered      bigint CHECK (fare_metered >= 0),
    metered_distance_m integer CHECK (metered_distance_m >= 0),
    metered_duration_s integer CHECK (metered_duration_s >= 0),
    needs_review      boolean NOT NULL DEFAULT false,
    cancelled_by      text CHECK (cancelled_by IN ('rider', 'driver', 'operator', 'system')),
    cancel_reason     text CHECK (length(cancel_reason) <= 64),
    cancel_fee        bigint CHECK (cancel_fee >= 0),
    end_location      geography(Point, 4326),
    requested_at      timestamptz NOT NULL DEFAULT now(),
    matched_at        timestamptz,
    arrived_at        timestamptz,
    started_at        timestamptz,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    CHECK (state IN ('SEARCHING', 'CANCELLED') OR driver_id IS NOT NULL),
    CHECK ((state = 'COMPLETED') = (completed_at IS NOT NULL)),
    CHECK ((state = 'CANCELLED') = (cancelled_at IS NOT NULL)),
    CHECK (state <> 'COMPLETED' OR fare_final IS NOT NULL)
);

-- One active trip per rider and per driver: the database refuses a second
-- one even if two requests race past every check in the code.
CREATE UNIQUE INDEX trips_one_active_per_rider ON trips (rider_id)
    WHERE state IN ('SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS');
CREATE UNIQUE INDEX trips_one_active_per_driver ON trips (driver_id)
    WHERE state IN ('MATCHED', 'ARRIVED', 'IN_PROGRESS');
CREATE INDEX trips_rider_recent ON trips (rider_id, requested_at DESC, id DESC);
CREATE INDEX trips_driver_recent ON trips (driver_id, requested_at DESC, id DESC) WHERE driver_id IS NOT NULL;
CREATE INDEX trips_recent ON trips (requested_at DESC, id DESC);
CREATE INDEX trips_searching ON trips (requested_at) WHERE state = 'SEARCHING';

-- Every transition, in order: seq is the trip's version after it.
CREATE TABLE trip_events (
    trip_id    uuid NOT NULL REFERENCES trips (id),
    seq        integer NOT NULL,
    from_state text,
    to_state   text NOT NULL,
    actor_role text NOT NULL CHECK (actor_role IN ('rider', 'driver', 'operator', 'system')),
    actor_id   text,
    at         timestamptz NOT NULL DEFAULT now(),
    detail     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (trip_id, seq)
);

CREATE TABLE trip_ratings (
    trip_id    uuid NOT NULL REFERENCES trips (id),
    by_role    text NOT NULL CHECK (by_role IN ('rider', 'driver')),
    stars      smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
    comment    text CHECK (length(comment) <= 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trip_id, by_role)
);

-- POST /v1/rides with an Idempotency-Key: the first answer is kept and given
-- again for the same key and body.
CREATE TABLE ride_idempotency (
    rider_id   uuid NOT NULL REFERENCES riders (id),
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    body_hash  text NOT NULL,
    trip_id    uuid NOT NULL REFERENCES trips (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rider_id, key)
);

-- Events in the envelope of the event schemas, written in the same
-- transaction as the state they report; a relay publishes them in id order
-- and stamps published_at. (aggregate_id, aggregate_seq) orders one trip's
-- events without gaps.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type     text NOT NULL CHECK (event_type ~ '^[a-z]+(\.[a-z_]+)+$'),
    event_version  integer NOT NULL DEFAULT 1 CHECK (event_version >= 1),
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    producer       text NOT NULL,
    correlation_id uuid NOT NULL,
    aggregate_id   uuid NOT NULL,
    aggregate_seq  integer NOT NULL,
    payload        jsonb NOT NULL,
    published_at   timestamptz,
    UNIQUE (aggregate_id, aggregate_seq)
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- ------------------------------------------------------------ helpers
-- The small helpers are one-expression SQL functions, STABLE, so that the
-- planner inlines them; the bigger ones are PL/pgSQL, whose plans are cached
-- per session (an SQL function is planned again in every subtransaction).

CREATE FUNCTION rh_ts(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- A point as the REST API shows it.
CREATE FUNCTION rh_latlng(g geography) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN g IS NULL THEN NULL ELSE
        jsonb_build_object('lat', round(ST_Y(g::geometry)::numeric, 7)::float8, 'lng', round(ST_X(g::geometry)::numeric, 7)::float8) END
$$;

-- A point as events show it (the geo_point of the event schemas).
CREATE FUNCTION rh_latlon(g geography) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('lat', round(ST_Y(g::geometry)::numeric, 7)::float8, 'lon', round(ST_X(g::geometry)::numeric, 7)::float8)
$$;

-- Events carry money as a decimal in major units (currency_amount).
CREATE FUNCTION rh_money(minor bigint, cur text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('currency', cur, 'amount', round(minor / 100.0, 2))
$$;

-- An outbox row of a trip at a sequence number the caller has taken.
CREATE FUNCTION outbox_put(p_trip uuid, p_seq integer, p_type text, p_payload jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES (p_type, 'ridehaild', p_trip, p_trip, p_seq, p_payload);
END
$$;

-- An event of a trip outside a transition: takes the next sequence number.
CREATE FUNCTION trip_emit(t trips, etype text, payload jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    seq integer;
BEGIN
    UPDATE trips SET event_seq = event_seq + 1 WHERE id = t.id RETURNING event_seq INTO seq;
    PERFORM outbox_put(t.id, seq, etype, payload);
    RETURN seq;
END
$$;

-- The trip as the REST API shows it. with_timeline adds the transitions.
CREATE FUNCTION trip_json(t trips, with_timeline boolean) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'id', t.id,
        'state', t.state,
        'version', t.version,
        'rider_id', t.rider_id,
        'vehicle_type', t.vehicle_type,
        'pickup', rh_latlng(t.pickup) || COALESCE(jsonb_build_object('address', t.pickup_address), '{}'),
        'dropoff', rh_latlng(t.dropoff) || COALESCE(jsonb_build_object('address', t.dropoff_address), '{}'),
        'driver', (SELECT jsonb_build_object(
                       'id', d.id, 'name', d.name,
                       'vehicle', jsonb_build_object('type', d.vehicle_type, 'make', d.vehicle_make,
                                                     'model', d.vehicle_model, 'color', d.vehicle_color,
                                                     'plate', d.plate),
                       'rating', CASE WHEN d.rating_count > 0 THEN
                                     jsonb_build_object('average', round(d.rating_sum::numeric / d.rating_count, 2),
                                                        'count', d.rating_count) END)
                   FROM drivers d WHERE d.id = t.driver_id),
        'fare', jsonb_build_object(
            'currency', t.currency,
            'quoted', t.fare_quoted,
            'final', t.fare_final,
            'metered', t.fare_metered,
            'quote_id', t.quote_id,
            'breakdown', t.estimate - 'per_km' - 'per_min' - 'distance_m' - 'duration_s' - 'method',
            'needs_review', t.needs_review),
        'estimate', jsonb_build_object('distance_m', t.estimate->'distance_m', 'duration_s', t.estimate->'duration_s',
                                       'method', t.estimate->'method'),
        'metered', CASE WHEN t.metered_distance_m IS NOT NULL THEN
                       jsonb_build_object('distance_m', t.metered_distance_m, 'duration_s', t.metered_duration_s) END,
        'cancellation', CASE WHEN t.state = 'CANCELLED' THEN
                            jsonb_build_object('by', t.cancelled_by, 'reason', t.cancel_reason,
                                               'fee', t.cancel_fee) END,
        'requested_at', rh_ts(t.requested_at),
        'matched_at', rh_ts(t.matched_at),
        'arrived_at', rh_ts(t.arrived_at),
        'started_at', rh_ts(t.started_at),
        'completed_at', rh_ts(t.completed_at),
        'cancelled_at', rh_ts(t.cancelled_at),
        'timeline', CASE WHEN with_timeline THEN
                        (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                    'seq', e.seq, 'from', e.from_state, 'to', e.to_state, 'at', rh_ts(e.at),
                                    'by', e.actor_role)) ORDER BY e.seq)
                         FROM trip_events e WHERE e.trip_id = t.id) END));
END
$$;

-- ------------------------------------------------------------ requesting

-- Why a ride request is not a new trip, if it is not: the answer already
-- given to the same Idempotency-Key (200 replay, or 422 for another
-- request), or the rider's active trip (409). NULLs when it may proceed.
CREATE FUNCTION trip_request_refusal(p_rider uuid, p_key text, p_body_hash text,
                                     OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    t trips;
    prior ride_idempotency;
    active uuid;
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO prior FROM ride_idempotency WHERE rider_id = p_rider AND key = p_key;
        IF FOUND THEN
            IF prior.body_hash <> p_body_hash THEN
                status := 422;
                body := jsonb_build_object('reason', 'idempotency_key_reused', 'trip_id', prior.trip_id);
            ELSE
                SELECT * INTO t FROM trips WHERE id = prior.trip_id;
                status := 200;
                body := trip_json(t, false) || jsonb_build_object('idempotent_replay', true);
            END IF;
            RETURN;
        END IF;
    END IF;
    SELECT id INTO active FROM trips
     WHERE rider_id = p_rider AND state IN ('SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS');
    IF FOUND THEN
        status := 409;
        body := jsonb_build_object('reason', 'active_trip', 'active_trip_id', active);
    END IF;
END
$$;

-- Creates a trip in SEARCHING, with its history row and its events
-- (trip.requested, price.calculated), or answers why not. p_fare holds the
-- estimate/quote (see trips.estimate) and p_policy the rules in force.
-- Returns (status, body): 201 and the trip; 200 and the trip for a repeated
-- Idempotency-Key with the same body; 409 {active_trip_id}; 422
-- {reason: idempotency_key_reused}.
CREATE FUNCTION trip_request(p_rider uuid, p_key text, p_body_hash text, p_vehicle text,
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
    INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at)
    VALUES (t.id, t.version, NULL, 'SEARCHING', 'rider', p_rider::text, t.requested_at);
    PERFORM outbox_put(t.id, 1, 'trip.requested', jsonb_build_object(
        'trip_id', t.id, 'passenger_id', t.rider_id,
        'pickup_location', rh_latlon(t.pickup), 'dropoff_location', rh_latlon(t.dropoff),
        'requested_at', rh_ts(t.requested_at), 'vehicle_type', t.vehicle_type,
        'fare', rh_money(t.fare_quoted, t.currency)));
    PERFORM outbox_put(t.id, 2, 'price.calculated', jsonb_build_object(
        'trip_id', t.id, 'kind', 'upfront',
        'base_fare', round((p_fare->>'base')::numeric / 100, 2),
        'distance_fare', round((p_fare->>'distance')::numeric / 100, 2),
        'time_fare', round((p_fare->>'time')::numeric / 100, 2),
        'booking_fee', round((p_fare->>'booking_fee')::numeric / 100, 2),
        'surge_multiplier', (p_fare->>'surge_multiplier')::numeric,
        'total_fare', round(t.fare_quoted / 100.0, 2), 'currency', t.currency));
    status := 201;
    body := trip_json(t, false);
END
$$;

-- ------------------------------------------------------------ transitions

-- The metered fare from the tariff the trip was quoted with: integer
-- arithmetic, rounding halves up, exactly as pricing_fare() in
-- src/pricing/pricing.c, so a trip metered as estimated costs the quote.
CREATE FUNCTION trip_fare_distance(est jsonb, dist_m integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT ((est->>'per_km')::bigint * dist_m + 500) / 1000
$$;
CREATE FUNCTION trip_fare_time(est jsonb, dur_s integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT ((est->>'per_min')::bigint * dur_s + 30) / 60
$$;
CREATE FUNCTION trip_metered_fare(est jsonb, dist_m integer, dur_s integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT GREATEST((((est->>'base')::bigint + trip_fare_distance(est, dist_m) + trip_fare_time(est, dur_s))
                     * round((est->>'surge_multiplier')::numeric * 1000)::bigint + 500) / 1000,
                    (est->>'minimum')::bigint) + (est->>'booking_fee')::bigint
$$;

-- One transition of one trip. p_to is the target state; p_role/p_actor who
-- asks (rider, driver, operator, system); p_args:
--   expected_version  refuse unless the trip is at this version (optimistic)
--   driver_id, driver_version  (MATCHED) the driver, reserved on (status, version)
--   eta_s, distance_m, score   (MATCHED) the dispatch decision, for the event
--   distance_m, duration_s, end_lat, end_lng  (COMPLETED) the metered trip
--   reason  (CANCELLED)
--   only_from  refuse (409 state_changed) unless the trip is in this state
-- Returns (status, body): 200 and the trip (body.repeated when the trip was
-- already in that state by the same hand: the no-op answer); 404 not found
-- or not the caller's; 409 {reason, state} refused in the current state.
CREATE FUNCTION trip_transition(p_trip uuid, p_to text, p_role text, p_actor text, p_args jsonb,
                                OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    t trips;
    pol jsonb;
    now_ts timestamptz := now();
    fee bigint := 0;
    reason text;
    dver bigint;
    dist integer;
    dur integer;
    metered bigint;
    final bigint;
    review boolean := false;
    tol numeric;
    est_d numeric;
    est_t numeric;
    end_g geography;
    from_state text;
    evt jsonb := '{}';
BEGIN
    SELECT * INTO t FROM trips WHERE id = p_trip FOR UPDATE;
    IF NOT FOUND OR (p_role = 'rider' AND t.rider_id::text <> p_actor)
       OR (p_role = 'driver' AND p_to <> 'MATCHED' AND (t.driver_id IS NULL OR t.driver_id::text <> p_actor))
       OR (p_role = 'driver' AND p_to = 'MATCHED' AND (p_args->>'driver_id') IS DISTINCT FROM p_actor) THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found');
        RETURN;
    END IF;
    from_state := t.state;
    pol := t.policy;

    -- The same transition again: answer as the first time, change nothing.
    IF t.state = p_to THEN
        IF p_to = 'MATCHED' AND t.driver_id IS DISTINCT FROM (p_args->>'driver_id')::uuid THEN
            status := 409;
            body := jsonb_build_object('reason', 'already_matched', 'state', t.state);
            RETURN;
        END IF;
        status := 200;
        body := trip_json(t, false) || jsonb_build_object('repeated', true);
        RETURN;
    END IF;
    IF p_args ? 'only_from' AND t.state <> p_args->>'only_from' THEN
        status := 409;
        body := jsonb_build_object('reason', 'state_changed', 'state', t.state);
        RETURN;
    END IF;
    IF p_args ? 'expected_version' AND (p_args->>'expected_version')::integer <> t.version THEN
        status := 409;
        body := jsonb_build_object('reason', 'version_conflict', 'state', t.state, 'version', t.version);
        RETURN;
    END IF;
    IF NOT ((t.state = 'SEARCHING' AND p_to = 'MATCHED')
         OR (t.state = 'MATCHED' AND p_to = 'ARRIVED')
         OR (t.state = 'ARRIVED' AND p_to = 'IN_PROGRESS')
         OR (t.state = 'IN_PROGRESS' AND p_to = 'COMPLETED')
         OR (t.state IN ('SEARCHING', 'MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role <> 'driver')
         OR (t.state IN ('MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role = 'driver')
         OR (t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' AND p_role IN ('operator', 'system'))) THEN
        status := 409;
        body := jsonb_build_object('reason',
                    CASE WHEN t.state = 'MATCHED' AND p_to = 'MATCHED' THEN 'already_matched'
                         WHEN t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' THEN 'trip_in_progress'
                         WHEN t.state IN ('COMPLETED', 'CANCELLED') THEN 'trip_finished'
                         ELSE 'illegal_transition' END,
                    'state', t.state, 'to', p_to);
        RETURN;
    END IF;

    IF p_to = 'MATCHED' THEN
        -- Reserve the driver on (status, version): zero rows means someone
        -- else has them, or they are not available for this vehicle type.
        UPDATE drivers SET status = 'en_route', version = version + 1, updated_at = now_ts
         WHERE id = (p_args->>'driver_id')::uuid AND status IN ('available', 'offered') AND NOT disabled
           AND vehicle_type = t.vehicle_type
           AND (NOT p_args ? 'driver_version' OR version = (p_args->>'driver_version')::bigint)
        RETURNING version INTO dver;
        IF NOT FOUND THEN
            status := 409;
            body := jsonb_build_object('reason', 'driver_unavailable', 'state', t.state);
            RETURN;
        END IF;
        UPDATE trips SET state = 'MATCHED', driver_id = (p_args->>'driver_id')::uuid, matched_at = now_ts,
                         version = version + 1, event_seq = event_seq + 1
         WHERE id = t.id RETURNING * INTO t;
        evt := jsonb_build_object('driver_version', dver);
        PERFORM outbox_put(t.id, t.event_seq, 'trip.accepted', jsonb_build_object(
            'trip_id', t.id, 'driver_id', t.driver_id, 'accepted_at', rh_ts(now_ts))
            || jsonb_strip_nulls(jsonb_build_object('eta_seconds', (p_args->>'eta_s')::integer,
                                                    'distance_m', (p_args->>'distance_m')::integer,
                                                    'match_score', (p_args->>'score')::numeric))
            || jsonb_build_object('assigned_by', p_role));
    ELSIF p_to = 'ARRIVED' THEN
        UPDATE trips SET state = 'ARRIVED', arrived_at = now_ts, version = version + 1, event_seq = event_seq + 1
         WHERE id = t.id RETURNING * INTO t;
        PERFORM outbox_put(t.id, t.event_seq, 'trip.driver_arrived', jsonb_build_object(
            'trip_id', t.id, 'driver_id', t.driver_id, 'arrived_at', rh_ts(now_ts)));
    ELSIF p_to = 'IN_PROGRESS' THEN
        UPDATE drivers SET status = 'on_trip', version = version + 1, updated_at = now_ts
         WHERE id = t.driver_id AND status = 'en_route' RETURNING version INTO dver;
        UPDATE trips SET state = 'IN_PROGRESS', started_at = now_ts, version = version + 1, event_seq = event_seq + 1
         WHERE id = t.id RETURNING * INTO t;
        evt := jsonb_build_object('driver_version', dver);
        PERFORM outbox_put(t.id, t.event_seq, 'trip.started', jsonb_build_object(
            'trip_id', t.id, 'started_at', rh_ts(now_ts), 'start_location', rh_latlon(t.pickup)));
    ELSIF p_to = 'COMPLETED' THEN
        dist := (p_args->>'distance_m')::integer;
        dur := (p_args->>'duration_s')::integer;
        IF p_args ? 'end_lat' THEN
            end_g := ST_SetSRID(ST_MakePoint((p_args->>'end_lng')::float8, (p_args->>'end_lat')::float8), 4326)::geography;
        ELSE
            end_g := t.dropoff;
        END IF;
        metered := trip_metered_fare(t.estimate, dist, dur);
        -- The upfront price is honoured unless the trip deviated from the
        -- estimate beyond the tolerance (either way): then the metered fare
        -- is charged and the trip flagged for review.
        tol := (pol->>'fare_tolerance')::numeric;
        est_d := GREATEST((t.estimate->>'distance_m')::numeric, 1);
        est_t := GREATEST((t.estimate->>'duration_s')::numeric, 1);
        IF abs(dist - est_d) > tol * est_d OR abs(dur - est_t) > tol * est_t THEN
            review := true;
            final := metered;
        ELSE
            final := t.fare_quoted;
        END IF;
        UPDATE drivers SET status = 'available', version = version + 1, updated_at = now_ts
         WHERE id = t.driver_id AND status IN ('en_route', 'on_trip') RETURNING version INTO dver;
        UPDATE trips SET state = 'COMPLETED', completed_at = now_ts, version = version + 1,
                         metered_distance_m = dist, metered_duration_s = dur, fare_metered = metered,
                         fare_final = final, needs_review = review, end_location = end_g,
                         event_seq = event_seq + 2
         WHERE id = t.id RETURNING * INTO t;
        evt := jsonb_build_object('driver_version', dver, 'fare_final', final, 'needs_review', review);
        PERFORM outbox_put(t.id, t.event_seq - 1, 'trip.finished', jsonb_build_object(
            'trip_id', t.id, 'finished_at', rh_ts(now_ts), 'end_location', rh_latlon(end_g),
            'distance_km', round(dist / 1000.0, 3), 'duration_sec', dur,
            'fare', rh_money(final, t.currency)));
        PERFORM outbox_put(t.id, t.event_seq, 'price.calculated', jsonb_build_object(
            'trip_id', t.id, 'kind', 'final',
            'base_fare', round((t.estimate->>'base')::numeric / 100, 2),
            'distance_fare', round(trip_fare_distance(t.estimate, dist) / 100.0, 2),
            'time_fare', round(trip_fare_time(t.estimate, dur) / 100.0, 2),
            'booking_fee', round((t.estimate->>'booking_fee')::numeric / 100, 2),
            'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
            'total_fare', round(final / 100.0, 2), 'currency', t.currency,
            'upfront_fare', round(t.fare_quoted / 100.0, 2), 'needs_review', review));
    ELSE -- CANCELLED
        reason := COALESCE(p_args->>'reason', CASE p_role WHEN 'rider' THEN 'rider_cancelled'
                                                          WHEN 'driver' THEN 'driver_cancelled'
                                                          ELSE 'operator_cancelled' END);
        IF p_role = 'rider' AND t.state IN ('MATCHED', 'ARRIVED')
           AND now_ts > t.matched_at + make_interval(secs => (pol->>'cancel_grace_s')::float8) THEN
            fee := (pol->>'cancel_fee')::bigint;
        ELSIF p_role = 'driver' AND t.state = 'ARRIVED'
           AND now_ts >= t.arrived_at + make_interval(secs => (pol->>'no_show_wait_s')::float8) THEN
            fee := (pol->>'no_show_fee')::bigint;
            reason := 'rider_no_show';
        END IF;
        IF t.driver_id IS NOT NULL THEN
            UPDATE drivers SET status = 'available', version = version + 1, updated_at = now_ts
             WHERE id = t.driver_id AND status IN ('en_route', 'on_trip') RETURNING version INTO dver;
        END IF;
        UPDATE trips SET state = 'CANCELLED', cancelled_at = now_ts, version = version + 1,
                         cancelled_by = p_role, cancel_reason = reason, cancel_fee = fee,
                         event_seq = event_seq + 1
         WHERE id = t.id RETURNING * INTO t;
        evt := jsonb_build_object('driver_version', dver, 'reason', reason, 'fee', fee);
        PERFORM outbox_put(t.id, t.event_seq, 'trip.cancelled', jsonb_build_object(
            'trip_id', t.id, 'cancelled_at', rh_ts(now_ts), 'cancelled_by', p_role, 'reason', reason,
            'state_before', from_state, 'fee', rh_money(fee, t.currency))
            || jsonb_strip_nulls(jsonb_build_object('driver_id', t.driver_id)));
    END IF;
    INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
    VALUES (t.id, t.version, from_state, t.state, p_role, p_actor, now_ts, jsonb_strip_nulls(evt));
    status := 200;
    body := trip_json(t, false) || jsonb_strip_nulls(jsonb_build_object('driver_version', dver));
END
$$;

-- Many transitions in one transaction (one commit for all: the daemon
-- groups what arrives while the previous batch is at the database).
-- p_items: [{trip_id, to, role, actor, args}, ...]; one row per item, in
-- order. Fast path (p_safe false): no subtransactions, so an error in any
-- item fails the whole call, and the daemon sends the batch again with
-- p_safe: then each item runs in its own subtransaction and an error is that
-- item's answer only. (Errors are not expected: the function refuses what it
-- can foresee with a status; only a race the unique indexes catch, or a bug,
-- raises.)
CREATE FUNCTION trip_transitions(p_items jsonb, p_safe boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    it jsonb;
    n integer := 0;
    st integer;
    bd jsonb;
    code text;
    msg text;
BEGIN
    FOR it IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        IF NOT p_safe THEN
            SELECT x.status, x.body INTO st, bd
              FROM trip_transition((it->>'trip_id')::uuid, it->>'to', it->>'role', it->>'actor',
                                   COALESCE(it->'args', '{}')) x;
        ELSE
            BEGIN
                SELECT x.status, x.body INTO st, bd
                  FROM trip_transition((it->>'trip_id')::uuid, it->>'to', it->>'role', it->>'actor',
                                       COALESCE(it->'args', '{}')) x;
            EXCEPTION WHEN unique_violation THEN
                st := 409;
                bd := jsonb_build_object('reason', 'driver_busy');
            WHEN deadlock_detected OR serialization_failure THEN
                st := 503; -- a race with another transaction: asking again is safe
                bd := jsonb_build_object('reason', 'database_unavailable');
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
                st := 500;
                bd := jsonb_build_object('reason', 'error', 'sqlstate', code, 'message', msg);
            END;
        END IF;
        i := n;
        status := st;
        body := bd;
        RETURN NEXT;
        n := n + 1;
    END LOOP;
END
$$;

-- ------------------------------------------------------------ dispatch

-- Frees a driver the matcher reserved for an offer of p_trip (only if still
-- reserved at p_version) and records why the offer ended, as a
-- match.rejected event of the trip. Locks the trip first, in the same order
-- as trip_transition (trip, then driver), so the two never deadlock.
-- Returns the driver's new version, or NULL when there was nothing to free.
CREATE FUNCTION match_release(p_driver uuid, p_version bigint, p_trip uuid, p_reason text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    t trips;
    v bigint;
BEGIN
    SELECT * INTO t FROM trips WHERE id = p_trip FOR UPDATE;
    UPDATE drivers SET status = 'available', version = version + 1, updated_at = now()
     WHERE id = p_driver AND status = 'offered' AND version = p_version RETURNING version INTO v;
    IF t.id IS NOT NULL THEN
        PERFORM trip_emit(t, 'match.rejected', jsonb_build_object('trip_id', t.id, 'driver_id', p_driver,
                                                                  'reason', p_reason));
    END IF;
    RETURN v;
END
$$;

-- ------------------------------------------------------------ ratings

-- Returns (status, body): 201 {trip_id, by, stars}; 404; 409 {reason, state}.
CREATE FUNCTION trip_rate(p_trip uuid, p_role text, p_actor uuid, p_stars integer, p_comment text,
                          OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    t trips;
BEGIN
    SELECT * INTO t FROM trips WHERE id = p_trip FOR UPDATE;
    IF NOT FOUND OR (p_role = 'rider' AND t.rider_id <> p_actor)
       OR (p_role = 'driver' AND t.driver_id IS DISTINCT FROM p_actor) THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found');
        RETURN;
    END IF;
    IF t.state <> 'COMPLETED' THEN
        status := 409;
        body := jsonb_build_object('reason', 'not_completed', 'state', t.state);
        RETURN;
    END IF;
    INSERT INTO trip_ratings (trip_id, by_role, stars, comment) VALUES (t.id, p_role, p_stars, p_comment)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        status := 409;
        body := jsonb_build_object('reason', 'already_rated', 'state', t.state);
        RETURN;
    END IF;
    IF p_role = 'rider' THEN
        UPDATE drivers SET rating_sum = rating_sum + p_stars, rating_count = rating_count + 1 WHERE id = t.driver_id;
    ELSE
        UPDATE riders SET rating_sum = rating_sum + p_stars, rating_count = rating_count + 1 WHERE id = t.rider_id;
    END IF;
    PERFORM trip_emit(t, 'rating.submitted', jsonb_strip_nulls(jsonb_build_object(
        'trip_id', t.id, 'rated_by', p_role,
        'rater_id', p_actor, 'ratee_id', CASE p_role WHEN 'rider' THEN t.driver_id ELSE t.rider_id END,
        'stars', p_stars, 'comment', p_comment)));
    status := 201;
    body := jsonb_build_object('trip_id', t.id, 'by', p_role, 'stars', p_stars);
END
$$;

-- The receipt of a completed trip, or of a cancellation that was charged.
CREATE FUNCTION trip_receipt(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'trip_id', t.id,
        'state', t.state,
        'currency', t.currency,
        'rider_id', t.rider_id,
        'driver', (SELECT jsonb_build_object('id', d.id, 'name', d.name, 'plate', d.plate,
                                             'vehicle', d.vehicle_make || ' ' || d.vehicle_model)
                   FROM drivers d WHERE d.id = t.driver_id),
        'pickup', rh_latlng(t.pickup),
        'dropoff', rh_latlng(COALESCE(t.end_location, t.dropoff)),
        'requested_at', rh_ts(t.requested_at),
        'started_at', rh_ts(t.started_at),
        'completed_at', rh_ts(t.completed_at),
        'cancelled_at', rh_ts(t.cancelled_at),
        'distance_m', t.metered_distance_m,
        'duration_s', t.metered_duration_s,
        'lines', CASE WHEN t.state = 'COMPLETED' THEN
                     CASE WHEN t.fare_final <> t.fare_quoted THEN
                          -- metered: the lines add up to the total (surge and
                          -- the minimum fare as one adjustment line)
                          jsonb_build_array(
                              jsonb_build_object('item', 'base', 'amount', (t.estimate->>'base')::bigint),
                              jsonb_build_object('item', 'distance', 'amount',
                                                 trip_fare_distance(t.estimate, t.metered_distance_m)),
                              jsonb_build_object('item', 'time', 'amount',
                                                 trip_fare_time(t.estimate, t.metered_duration_s)),
                              jsonb_build_object('item', 'surge_and_minimum', 'amount',
                                                 t.fare_final - (t.estimate->>'booking_fee')::bigint
                                                 - (t.estimate->>'base')::bigint
                                                 - trip_fare_distance(t.estimate, t.metered_distance_m)
                                                 - trip_fare_time(t.estimate, t.metered_duration_s)),
                              jsonb_build_object('item', 'booking_fee', 'amount', (t.estimate->>'booking_fee')::bigint))
                     ELSE jsonb_build_array(jsonb_build_object('item', 'upfront_fare', 'amount', t.fare_quoted)) END
                 ELSE jsonb_build_array(jsonb_build_object('item', 'cancellation_fee', 'amount', t.cancel_fee,
                                                           'reason', t.cancel_reason)) END,
        'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
        'upfront_fare', t.fare_quoted,
        'metered_fare', t.fare_metered,
        'total', CASE WHEN t.state = 'COMPLETED' THEN t.fare_final ELSE t.cancel_fee END,
        'needs_review', t.needs_review))
$$;
