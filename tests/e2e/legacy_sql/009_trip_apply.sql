-- 009: a batch of transitions as a handful of statements, not a handful per
-- transition.
--
-- trip_transitions() ran trip_step() once per item: a SELECT ... FOR UPDATE,
-- one or two UPDATEs and an INSERT each, every one a new executor start in
-- the database (the CHECK constraints of trips are read back from their
-- stored text at each UPDATE: a sixth of the database's time went there).
-- Now trip_apply() is the state machine, the only code that changes a
-- trip's state:
--   1. reads every trip of the batch (and every driver it names or has) in
--      one statement each;
--   2. runs the steps in item order on those rows in memory (a trip named
--      twice sees its own earlier step);
--   3. writes every changed trip, every changed driver, every history row
--      and every outbox row with one statement each, and answers each item
--      with the trip as its step left it.
-- p_lock reads the rows FOR UPDATE (ids in order), so nothing can change
-- them before the writes. Without it the reads take no lock and each write
-- is checked against what was read (trips: version and event_seq; drivers:
-- version), optimistically: a row changed meanwhile fails the whole batch
-- with serialization_failure, and the daemon runs it again item by item,
-- with locks (trip_transitions(items, true)). trip_step() and
-- trip_transition() go: nothing calls them now.

DROP FUNCTION trip_transition(uuid, text, text, text, jsonb);
DROP FUNCTION trip_step(uuid, text, text, text, jsonb);

CREATE FUNCTION trip_apply(p_items jsonb, p_lock boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ts timestamptz := now();
    tids uuid[];
    dids uuid[];
    ts trips[];           -- the batch's trips, by id, as the steps leave them
    tv0 integer[];        -- their version and event_seq as read
    te0 integer[];
    tdirty boolean[];
    tmap jsonb;           -- trip id -> index in ts
    ds drivers[];         -- the drivers named or assigned, by id
    dv0 bigint[];
    ddirty boolean[];
    dmap jsonb;
    n_t integer := 0;     -- changed trips, drivers
    n_d integer := 0;
    cnt integer;
    -- answers
    a_st integer[] := '{}';
    a_bd jsonb[] := '{}';
    -- history rows
    e_trip uuid[] := '{}';
    e_seq integer[] := '{}';
    e_from text[] := '{}';
    e_to text[] := '{}';
    e_role text[] := '{}';
    e_actor text[] := '{}';
    e_detail jsonb[] := '{}';
    -- outbox rows, in order
    o_trip uuid[] := '{}';
    o_seq integer[] := '{}';
    o_type text[] := '{}';
    o_pl jsonb[] := '{}';
    -- one item
    it jsonb;
    p_to text;
    p_role text;
    p_actor text;
    p_args jsonb;
    tp integer;
    dp integer;
    t trips;
    d drivers;
    st integer;
    bd jsonb;
    pol jsonb;
    fee bigint;
    reason text;
    dver bigint;
    dist integer;
    dur integer;
    metered bigint;
    final bigint;
    review boolean;
    tol numeric;
    est_d numeric;
    est_t numeric;
    end_g geography;
    from_state text;
    evt jsonb;
    ev1 text;
    pl1 jsonb;
    ev2 text;
    pl2 jsonb;
BEGIN
    -- 1. the rows
    -- (= ANY of an array: an index scan whatever the planner thinks of the
    -- table's size when the plan is cached)
    SELECT array_agg((value->>'trip_id')::uuid), array_agg((value->'args'->>'driver_id')::uuid)
      INTO tids, dids FROM jsonb_array_elements(p_items);
    IF p_lock THEN
        SELECT array_agg(l.t ORDER BY (l.t).id) INTO ts
          FROM (SELECT t FROM trips t WHERE t.id = ANY (tids) ORDER BY t.id FOR UPDATE) l;
    ELSE
        SELECT array_agg(t ORDER BY t.id) INTO ts FROM trips t WHERE t.id = ANY (tids);
    END IF;
    SELECT jsonb_object_agg(u.id, u.ordinality), array_agg(u.version ORDER BY u.ordinality),
           array_agg(u.event_seq ORDER BY u.ordinality), array_agg(false)
      INTO tmap, tv0, te0, tdirty
      FROM unnest(ts) WITH ORDINALITY AS u;
    -- the drivers the items name (args.driver_id: MATCHED) and the trips' drivers
    dids := dids || (SELECT array_agg(x.driver_id) FROM unnest(ts) x);
    IF p_lock THEN
        SELECT array_agg(l.d ORDER BY (l.d).id) INTO ds
          FROM (SELECT d FROM drivers d WHERE d.id = ANY (dids) ORDER BY d.id FOR UPDATE) l;
    ELSE
        SELECT array_agg(d ORDER BY d.id) INTO ds FROM drivers d WHERE d.id = ANY (dids);
    END IF;
    SELECT jsonb_object_agg(u.id, u.ordinality), array_agg(u.version ORDER BY u.ordinality), array_agg(false)
      INTO dmap, dv0, ddirty
      FROM unnest(ds) WITH ORDINALITY AS u;
    tmap := COALESCE(tmap, '{}');
    dmap := COALESCE(dmap, '{}');

    -- 2. the steps
    FOR it IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        p_to := it->>'to';
        p_role := it->>'role';
        p_actor := it->>'actor';
        p_args := COALESCE(it->'args', '{}');
        tp := (tmap->>((it->>'trip_id')::uuid::text))::integer;
        dver := NULL;
        <<step>>
        BEGIN
            IF tp IS NOT NULL THEN
                t := ts[tp];
            END IF;
            IF tp IS NULL OR (p_role = 'rider' AND t.rider_id::text <> p_actor)
               OR (p_role = 'driver' AND p_to <> 'MATCHED' AND (t.driver_id IS NULL OR t.driver_id::text <> p_actor))
               OR (p_role = 'driver' AND p_to = 'MATCHED' AND (p_args->>'driver_id') IS DISTINCT FROM p_actor) THEN
                st := 404;
                bd := jsonb_build_object('reason', 'not_found');
                EXIT step;
            END IF;
            from_state := t.state;
            pol := t.policy;

            -- The same transition again: answer as the first time, change nothing.
            IF t.state = p_to THEN
                IF p_to = 'MATCHED' AND t.driver_id IS DISTINCT FROM (p_args->>'driver_id')::uuid THEN
                    st := 409;
                    bd := jsonb_build_object('reason', 'already_matched', 'state', t.state);
                    EXIT step;
                END IF;
                st := 200;
                bd := jsonb_build_object('repeated', true);
                EXIT step;
            END IF;
            IF p_args ? 'only_from' AND t.state <> p_args->>'only_from' THEN
                st := 409;
                bd := jsonb_build_object('reason', 'state_changed', 'state', t.state);
                EXIT step;
            END IF;
            IF p_args ? 'expected_version' AND (p_args->>'expected_version')::integer <> t.version THEN
                st := 409;
                bd := jsonb_build_object('reason', 'version_conflict', 'state', t.state, 'version', t.version);
                EXIT step;
            END IF;
            IF NOT ((t.state = 'SEARCHING' AND p_to = 'MATCHED')
                 OR (t.state = 'MATCHED' AND p_to = 'ARRIVED')
                 OR (t.state = 'ARRIVED' AND p_to = 'IN_PROGRESS')
                 OR (t.state = 'IN_PROGRESS' AND p_to = 'COMPLETED')
                 OR (t.state IN ('SEARCHING', 'MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role <> 'driver')
                 OR (t.state IN ('MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role = 'driver')
                 OR (t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' AND p_role IN ('operator', 'system'))) THEN
                st := 409;
                bd := jsonb_build_object('reason',
                            CASE WHEN t.state = 'MATCHED' AND p_to = 'MATCHED' THEN 'already_matched'
                                 WHEN t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' THEN 'trip_in_progress'
                                 WHEN t.state IN ('COMPLETED', 'CANCELLED') THEN 'trip_finished'
                                 ELSE 'illegal_transition' END,
                            'state', t.state, 'to', p_to);
                EXIT step;
            END IF;

            -- the driver: the one named (MATCHED) or the trip's
            dp := (dmap->>(CASE WHEN p_to = 'MATCHED' THEN (p_args->>'driver_id')::uuid ELSE t.driver_id END)::text)::integer;
            IF dp IS NOT NULL THEN
                d := ds[dp];
            ELSE
                d := NULL;
            END IF;
            evt := '{}';
            ev2 := NULL;
            pl2 := NULL;
            IF p_to = 'MATCHED' THEN
                -- The driver must be available (or offered this trip) on
                -- (status, version), for this vehicle type.
                IF dp IS NULL OR d.status NOT IN ('available', 'offered') OR d.disabled
                   OR d.vehicle_type <> t.vehicle_type
                   OR (p_args ? 'driver_version' AND d.version <> (p_args->>'driver_version')::bigint) THEN
                    st := 409;
                    bd := jsonb_build_object('reason', 'driver_unavailable', 'state', t.state);
                    EXIT step;
                END IF;
                d.status := 'en_route';
                t.state := 'MATCHED';
                t.driver_id := d.id;
                t.matched_at := now_ts;
                t.event_seq := t.event_seq + 1;
                ev1 := 'trip.accepted';
                pl1 := jsonb_build_object(
                    'trip_id', t.id, 'driver_id', t.driver_id, 'accepted_at', rh_ts(now_ts))
                    || jsonb_strip_nulls(jsonb_build_object('eta_seconds', (p_args->>'eta_s')::integer,
                                                            'distance_m', (p_args->>'distance_m')::integer,
                                                            'match_score', (p_args->>'score')::numeric))
                    || jsonb_build_object('assigned_by', p_role);
            ELSIF p_to = 'ARRIVED' THEN
                t.state := 'ARRIVED';
                t.arrived_at := now_ts;
                t.event_seq := t.event_seq + 1;
                ev1 := 'trip.driver_arrived';
                pl1 := jsonb_build_object('trip_id', t.id, 'driver_id', t.driver_id, 'arrived_at', rh_ts(now_ts));
            ELSIF p_to = 'IN_PROGRESS' THEN
                IF dp IS NOT NULL AND d.status = 'en_route' THEN
                    d.status := 'on_trip';
                END IF;
                t.state := 'IN_PROGRESS';
                t.started_at := now_ts;
                t.event_seq := t.event_seq + 1;
                ev1 := 'trip.started';
                pl1 := jsonb_build_object('trip_id', t.id, 'started_at', rh_ts(now_ts),
                                          'start_location', rh_latlon(t.pickup));
            ELSIF p_to = 'COMPLETED' THEN
                dist := (p_args->>'distance_m')::integer;
                dur := (p_args->>'duration_s')::integer;
                IF p_args ? 'end_lat' THEN
                    end_g := ST_SetSRID(ST_MakePoint((p_args->>'end_lng')::float8, (p_args->>'end_lat')::float8), 4326)::geography;
                ELSE
                    end_g := t.dropoff;
                END IF;
                metered := trip_metered_fare(t.estimate, dist, dur);
                -- The upfront price is honoured unless the trip deviated from
                -- the estimate beyond the tolerance (either way): then the
                -- metered fare is charged and the trip flagged for review.
                tol := (pol->>'fare_tolerance')::numeric;
                est_d := GREATEST((t.estimate->>'distance_m')::numeric, 1);
                est_t := GREATEST((t.estimate->>'duration_s')::numeric, 1);
                review := abs(dist - est_d) > tol * est_d OR abs(dur - est_t) > tol * est_t;
                final := CASE WHEN review THEN metered ELSE t.fare_quoted END;
                IF dp IS NOT NULL AND d.status IN ('en_route', 'on_trip') THEN
                    d.status := 'available';
                END IF;
                t.state := 'COMPLETED';
                t.completed_at := now_ts;
                t.metered_distance_m := dist;
                t.metered_duration_s := dur;
                t.fare_metered := metered;
                t.fare_final := final;
                t.needs_review := review;
                t.end_location := end_g;
                t.event_seq := t.event_seq + 2;
                evt := jsonb_build_object('fare_final', final, 'needs_review', review);
                ev1 := 'trip.finished';
                pl1 := jsonb_build_object(
                    'trip_id', t.id, 'finished_at', rh_ts(now_ts), 'end_location', rh_latlon(end_g),
                    'distance_km', round(dist / 1000.0, 3), 'duration_sec', dur,
                    'fare', rh_money(final, t.currency));
                ev2 := 'price.calculated';
                pl2 := jsonb_build_object(
                    'trip_id', t.id, 'kind', 'final',
                    'base_fare', round((t.estimate->>'base')::numeric / 100, 2),
                    'distance_fare', round(trip_fare_distance(t.estimate, dist) / 100.0, 2),
                    'time_fare', round(trip_fare_time(t.estimate, dur) / 100.0, 2),
                    'booking_fee', round((t.estimate->>'booking_fee')::numeric / 100, 2),
                    'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
                    'total_fare', round(final / 100.0, 2), 'currency', t.currency,
                    'upfront_fare', round(t.fare_quoted / 100.0, 2), 'needs_review', review);
            ELSE -- CANCELLED
                fee := 0;
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
                IF dp IS NOT NULL AND d.status IN ('en_route', 'on_trip') THEN
                    d.status := 'available';
                END IF;
                t.state := 'CANCELLED';
                t.cancelled_at := now_ts;
                t.cancelled_by := p_role;
                t.cancel_reason := reason;
                t.cancel_fee := fee;
                t.event_seq := t.event_seq + 1;
                evt := jsonb_build_object('reason', reason, 'fee', fee);
                ev1 := 'trip.cancelled';
                pl1 := jsonb_build_object(
                    'trip_id', t.id, 'cancelled_at', rh_ts(now_ts), 'cancelled_by', p_role, 'reason', reason,
                    'state_before', from_state, 'fee', rh_money(fee, t.currency))
                    || jsonb_strip_nulls(jsonb_build_object('driver_id', t.driver_id));
            END IF;
            t.version := t.version + 1;
            ts[tp] := t;
            IF NOT tdirty[tp] THEN
                tdirty[tp] := true;
                n_t := n_t + 1;
            END IF;
            -- a driver whose status moved gets a new version
            IF dp IS NOT NULL AND d.status IS DISTINCT FROM (ds[dp]).status THEN
                d.version := d.version + 1;
                d.updated_at := now_ts;
                dver := d.version;
                ds[dp] := d;
                IF NOT ddirty[dp] THEN
                    ddirty[dp] := true;
                    n_d := n_d + 1;
                END IF;
            END IF;
            e_trip := e_trip || t.id;
            e_seq := e_seq || t.version;
            e_from := e_from || from_state;
            e_to := e_to || t.state;
            e_role := e_role || p_role;
            e_actor := e_actor || p_actor;
            e_detail := e_detail || jsonb_strip_nulls(jsonb_build_object('driver_version', dver) || evt);
            -- ev2: a second event, the last sequence number; ev1 then takes
            -- the one before
            o_trip := o_trip || t.id;
            o_type := o_type || ev1;
            o_pl := o_pl || pl1;
            o_seq := o_seq || (t.event_seq - CASE WHEN ev2 IS NULL THEN 0 ELSE 1 END);
            IF ev2 IS NOT NULL THEN
                o_trip := o_trip || t.id;
                o_type := o_type || ev2;
                o_pl := o_pl || pl2;
                o_seq := o_seq || t.event_seq;
            END IF;
            st := 200;
            bd := jsonb_strip_nulls(jsonb_build_object('driver_version', dver));
        END;
        -- a 200 answer holds the trip as this step left it (a repeat: as it is)
        IF st = 200 THEN
            dp := (dmap->>(t.driver_id::text))::integer;
            IF dp IS NOT NULL THEN
                d := ds[dp];
            ELSE
                d := NULL;
            END IF;
            bd := trip_view(t, d) || bd;
        END IF;
        a_st := a_st || st;
        a_bd := a_bd || bd;
    END LOOP;

    -- 3. the writes
    IF n_t > 0 THEN
        UPDATE trips x
           SET state = u.state, driver_id = u.driver_id, version = u.version, event_seq = u.event_seq,
               fare_final = u.fare_final, fare_metered = u.fare_metered,
               metered_distance_m = u.metered_distance_m, metered_duration_s = u.metered_duration_s,
               needs_review = u.needs_review, cancelled_by = u.cancelled_by, cancel_reason = u.cancel_reason,
               cancel_fee = u.cancel_fee, end_location = u.end_location, matched_at = u.matched_at,
               arrived_at = u.arrived_at, started_at = u.started_at, completed_at = u.completed_at,
               cancelled_at = u.cancelled_at
          FROM unnest(ts) WITH ORDINALITY AS u
         WHERE tdirty[u.ordinality] AND x.id = u.id
           AND x.version = tv0[u.ordinality] AND x.event_seq = te0[u.ordinality];
        GET DIAGNOSTICS cnt = ROW_COUNT;
        IF cnt <> n_t THEN
            RAISE EXCEPTION 'trip_apply: % of % trips changed since they were read', n_t - cnt, n_t
                USING ERRCODE = 'serialization_failure';
        END IF;
        INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
        SELECT u.tr, u.sq, u.fr, u.tt, u.ro, u.ac, now_ts, u.de
          FROM unnest(e_trip, e_seq, e_from, e_to, e_role, e_actor, e_detail) AS u (tr, sq, fr, tt, ro, ac, de);
        INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
        SELECT u.ty, 'ridehaild', u.tr, u.tr, u.sq, u.pl
          FROM unnest(o_type, o_trip, o_seq, o_pl) WITH ORDINALITY AS u (ty, tr, sq, pl, n)
         ORDER BY u.n;
    END IF;
    IF n_d > 0 THEN
        UPDATE drivers x
           SET status = u.status, version = u.version, updated_at = u.updated_at
          FROM unnest(ds) WITH ORDINALITY AS u
         WHERE ddirty[u.ordinality] AND x.id = u.id AND x.version = dv0[u.ordinality];
        GET DIAGNOSTICS cnt = ROW_COUNT;
        IF cnt <> n_d THEN
            RAISE EXCEPTION 'trip_apply: % of % drivers changed since they were read', n_d - cnt, n_d
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
    RETURN QUERY SELECT (u.n - 1)::integer, u.st, u.bd FROM unnest(a_st, a_bd) WITH ORDINALITY AS u (st, bd, n);
END
$$;

-- One transaction for the batch; p_safe: one subtransaction per item, each
-- with its rows locked, so that one failing item fails alone: a race the
-- unique indexes caught is that item's 409, a deadlock its 503.
CREATE OR REPLACE FUNCTION trip_transitions(p_items jsonb, p_safe boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    it jsonb;
    n integer;
    st integer;
    bd jsonb;
    code text;
    msg text;
BEGIN
    IF NOT p_safe THEN
        RETURN QUERY SELECT a.i, a.status, a.body FROM trip_apply(p_items, false) a;
        RETURN;
    END IF;
    FOR it, n IN SELECT value, ordinality FROM jsonb_array_elements(p_items) WITH ORDINALITY LOOP
        BEGIN
            SELECT a.status, a.body INTO st, bd FROM trip_apply(jsonb_build_array(it), true) a;
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
        i := n - 1;
        status := st;
        body := bd;
        RETURN NEXT;
    END LOOP;
END
$$;

-- ------------------------------------------------------------ requesting

-- The outbox payloads of a new trip, one definition for trip_request() and
-- trip_requests().
CREATE FUNCTION trip_requested_payload(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'trip_id', t.id, 'passenger_id', t.rider_id,
        'pickup_location', rh_latlon(t.pickup), 'dropoff_location', rh_latlon(t.dropoff),
        'requested_at', rh_ts(t.requested_at), 'vehicle_type', t.vehicle_type,
        'fare', rh_money(t.fare_quoted, t.currency))
$$;

CREATE FUNCTION trip_upfront_payload(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'trip_id', t.id, 'kind', 'upfront',
        'base_fare', round((t.estimate->>'base')::numeric / 100, 2),
        'distance_fare', round((t.estimate->>'distance')::numeric / 100, 2),
        'time_fare', round((t.estimate->>'time')::numeric / 100, 2),
        'booking_fee', round((t.estimate->>'booking_fee')::numeric / 100, 2),
        'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
        'total_fare', round(t.fare_quoted / 100.0, 2), 'currency', t.currency)
$$;

-- One request, carefully (sql/008, its payloads from the functions above):
-- what trip_requests() falls back to.
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
    VALUES ('trip.requested', 'ridehaild', t.id, t.id, 1, trip_requested_payload(t)),
           ('price.calculated', 'ridehaild', t.id, t.id, 2, trip_upfront_payload(t));
    status := 201;
    body := trip_view(t, NULL); -- no driver yet
END
$$;

-- Ride requests that arrive together, as a few statements for all of them:
-- the refusals (an Idempotency-Key seen before, an active trip) read with
-- one statement each, then every new trip, idempotency key, history row
-- and outbox row written with one statement each. A batch naming a rider
-- twice, or one that loses a race (unique_violation: a concurrent request
-- of the same rider or key committed first), goes through trip_request()
-- item by item instead, which answers each as it always has. p_safe: item
-- by item, each in its own subtransaction, so that one failing request
-- fails alone (500) and the others stand. Items are trip_request()'s
-- parameters: {rider, key, hash, vehicle, plat, plng, dlat, dlng, pa, da,
-- cur, quote, fare, policy}.
CREATE FUNCTION trip_requests(p_items jsonb, p_safe boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n_items integer := jsonb_array_length(p_items);
    riders uuid[];
    keys text[];
    rmap jsonb;           -- rider -> item number (from 1)
    st integer[];
    bd jsonb[];
    ts trips[];
    t trips;
    k integer;
    it jsonb;
    pk text;
    ph text;
    ptrip uuid;
    s1 integer;
    b1 jsonb;
    fast boolean;
    ik_rider uuid[] := '{}';
    ik_key text[] := '{}';
    ik_hash text[] := '{}';
    ik_trip uuid[] := '{}';
    code text;
    msg text;
BEGIN
    SELECT array_agg((e.v->>'rider')::uuid ORDER BY e.n), array_agg(e.v->>'key' ORDER BY e.n),
           jsonb_object_agg((e.v->>'rider')::uuid, e.n)
      INTO riders, keys, rmap
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e (v, n);
    st := array_fill(0, ARRAY[n_items]);
    bd := array_fill(NULL::jsonb, ARRAY[n_items]);
    fast := NOT p_safe AND n_items > 1 AND (SELECT count(*) FROM jsonb_object_keys(rmap)) = n_items;
    IF fast THEN
        BEGIN
            -- 1. refusals, in trip_request_refusal()'s order: the key, then
            -- an active trip
            FOR k, pk, ph, ptrip IN
                SELECT (rmap->>(p.rider_id::text))::integer, p.key, p.body_hash, p.trip_id
                  FROM ride_idempotency p
                 WHERE p.rider_id = ANY (riders) AND p.key = ANY (keys)
            LOOP
                IF pk = keys[k] THEN
                    IF ph <> p_items->(k - 1)->>'hash' THEN
                        st[k] := 422;
                        bd[k] := jsonb_build_object('reason', 'idempotency_key_reused', 'trip_id', ptrip);
                    ELSE
                        st[k] := 200;
                        bd[k] := (SELECT trip_json(x, false) FROM trips x WHERE x.id = ptrip)
                                 || jsonb_build_object('idempotent_replay', true);
                    END IF;
                END IF;
            END LOOP;
            FOR k, ptrip IN
                SELECT (rmap->>(x.rider_id::text))::integer, x.id FROM trips x
                 WHERE x.rider_id = ANY (riders) AND x.state IN ('SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS')
            LOOP
                IF st[k] = 0 THEN
                    st[k] := 409;
                    bd[k] := jsonb_build_object('reason', 'active_trip', 'active_trip_id', ptrip);
                END IF;
            END LOOP;
            -- 2. the new trips
            WITH ins AS (
                INSERT INTO trips (id, rider_id, vehicle_type, pickup, dropoff, pickup_address, dropoff_address,
                                   currency, quote_id, fare_quoted, estimate, policy, event_seq)
                SELECT gen_random_uuid(), (e.v->>'rider')::uuid, e.v->>'vehicle',
                       ST_SetSRID(ST_MakePoint((e.v->>'plng')::float8, (e.v->>'plat')::float8), 4326)::geography,
                       ST_SetSRID(ST_MakePoint((e.v->>'dlng')::float8, (e.v->>'dlat')::float8), 4326)::geography,
                       e.v->>'pa', e.v->>'da', e.v->>'cur', e.v->>'quote', (e.v->'fare'->>'total')::bigint,
                       e.v->'fare', e.v->'policy', 2
                  FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e (v, n)
                 WHERE st[e.n] = 0
                RETURNING trips AS t)
            SELECT array_agg(ins.t) INTO ts FROM ins;
            IF ts IS NOT NULL THEN
                -- 3. their keys, history rows and outbox rows
                FOREACH t IN ARRAY ts LOOP
                    k := (rmap->>(t.rider_id::text))::integer;
                    IF keys[k] IS NOT NULL THEN
                        ik_rider := ik_rider || t.rider_id;
                        ik_key := ik_key || keys[k];
                        ik_hash := ik_hash || (p_items->(k - 1)->>'hash');
                        ik_trip := ik_trip || t.id;
                    END IF;
                    st[k] := 201;
                    bd[k] := trip_view(t, NULL); -- no driver yet
                END LOOP;
                INSERT INTO ride_idempotency (rider_id, key, body_hash, trip_id)
                SELECT u.r, u.k, u.h, u.t FROM unnest(ik_rider, ik_key, ik_hash, ik_trip) AS u (r, k, h, t);
                INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at)
                SELECT u.id, u.version, NULL, 'SEARCHING', 'rider', u.rider_id::text, u.requested_at
                  FROM unnest(ts) AS u;
                INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
                SELECT v.et, 'ridehaild', (ts[g.n]).id, (ts[g.n]).id, v.seq, v.pl
                  FROM generate_subscripts(ts, 1) AS g (n)
                 CROSS JOIN LATERAL (VALUES ('trip.requested', 1, trip_requested_payload(ts[g.n])),
                                            ('price.calculated', 2, trip_upfront_payload(ts[g.n])))
                       AS v (et, seq, pl)
                 ORDER BY g.n, v.seq;
            END IF;
        EXCEPTION WHEN unique_violation THEN
            fast := false; -- a race lost: item by item, which answers it
        END;
    END IF;
    IF NOT fast THEN
        FOR k IN 1 .. n_items LOOP
            it := p_items->(k - 1);
            BEGIN
                SELECT x.status, x.body INTO s1, b1
                  FROM trip_request((it->>'rider')::uuid, it->>'key', it->>'hash', it->>'vehicle',
                                    (it->>'plat')::float8, (it->>'plng')::float8,
                                    (it->>'dlat')::float8, (it->>'dlng')::float8,
                                    it->>'pa', it->>'da', it->>'cur', it->>'quote', it->'fare', it->'policy') x;
            EXCEPTION WHEN deadlock_detected OR serialization_failure THEN
                s1 := 503; -- a race with another transaction: asking again is safe
                b1 := jsonb_build_object('reason', 'database_unavailable');
            WHEN OTHERS THEN
                IF NOT p_safe THEN
                    RAISE;
                END IF;
                GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
                s1 := 500;
                b1 := jsonb_build_object('reason', 'error', 'sqlstate', code, 'message', msg);
            END;
            st[k] := s1;
            bd[k] := b1;
        END LOOP;
    END IF;
    RETURN QUERY SELECT (u.n - 1)::integer, u.s, u.b FROM unnest(st, bd) WITH ORDINALITY AS u (s, b, n);
END
$$;

-- The plans of both entry points (and of what they call): every statement
-- in them reads or writes rows by key, so the right plan is an index scan
-- whatever the statistics say (a new city's tables are small, then not),
-- and the generic plan: with an array parameter (ids = ANY ($1)) the
-- planner found a custom plan cheaper than the generic one and planned
-- again at every call. Backend CPU per item in batches of one, 1,576 ->
-- 1,016 us (MATCHED) and 996 -> 690 us (requests); batches of 16 and 64
-- unchanged within noise (bench/trip_sql.py, make bench-trips).
ALTER FUNCTION trip_transitions(jsonb, boolean) SET enable_seqscan = off SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION trip_requests(jsonb, boolean) SET enable_seqscan = off SET plan_cache_mode = force_generic_plan;
