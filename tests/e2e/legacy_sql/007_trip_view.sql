-- 007: the trip as the API shows it, built once per batch of transitions.
--
-- trip_json() was PL/pgSQL whose driver sub-select took a parameter (the
-- trip's driver_id): its plan was a custom one, planned again on every call,
-- and so was every caller's (about half of a transition's time in the
-- database went there). Now:
--   trip_view(t, d)   the trip and its driver row (NULL: none) as the API
--                     shows it, one SQL expression the planner inlines;
--   trip_json(t, tl)  trip_view with the driver looked up (and the timeline):
--                     sql/008, one definition of the shape;
--   trip_step()       trip_transition() without the trip in its answer: 200
--                     answers carry only what the step adds (driver_version,
--                     repeated); its history row and outbox rows are one
--                     INSERT statement;
--   trip_transitions  runs the steps, then builds every answer's trip with
--                     one statement joining trips and drivers.
-- trip_transition() keeps its contract (the step plus the trip).

CREATE FUNCTION trip_view(t trips, d drivers) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'id', t.id,
        'state', t.state,
        'version', t.version,
        'rider_id', t.rider_id,
        'vehicle_type', t.vehicle_type,
        'pickup', rh_latlng(t.pickup) || COALESCE(jsonb_build_object('address', t.pickup_address), '{}'),
        'dropoff', rh_latlng(t.dropoff) || COALESCE(jsonb_build_object('address', t.dropoff_address), '{}'),
        'driver', CASE WHEN d.id IS NOT NULL THEN jsonb_build_object(
                       'id', d.id, 'name', d.name,
                       'vehicle', jsonb_build_object('type', d.vehicle_type, 'make', d.vehicle_make,
                                                     'model', d.vehicle_model, 'color', d.vehicle_color,
                                                     'plate', d.plate),
                       'rating', CASE WHEN d.rating_count > 0 THEN
                                     jsonb_build_object('average', round(d.rating_sum::numeric / d.rating_count, 2),
                                                        'count', d.rating_count) END) END,
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
        'cancelled_at', rh_ts(t.cancelled_at)))
$$;

-- One transition of one trip, as trip_transition() below, but a 200 answer
-- holds only {driver_version} or {repeated: true}: the caller adds the trip.
CREATE FUNCTION trip_step(p_trip uuid, p_to text, p_role text, p_actor text, p_args jsonb,
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
    ev1 text;
    pl1 jsonb;
    ev2 text;
    pl2 jsonb;
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
        body := jsonb_build_object('repeated', true);
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
        ev1 := 'trip.accepted';
        pl1 := jsonb_build_object(
            'trip_id', t.id, 'driver_id', t.driver_id, 'accepted_at', rh_ts(now_ts))
            || jsonb_strip_nulls(jsonb_build_object('eta_seconds', (p_args->>'eta_s')::integer,
                                                    'distance_m', (p_args->>'distance_m')::integer,
                                                    'match_score', (p_args->>'score')::numeric))
            || jsonb_build_object('assigned_by', p_role);
    ELSIF p_to = 'ARRIVED' THEN
        UPDATE trips SET state = 'ARRIVED', arrived_at = now_ts, version = version + 1, event_seq = event_seq + 1
         WHERE id = t.id RETURNING * INTO t;
        ev1 := 'trip.driver_arrived';
        pl1 := jsonb_build_object(
            'trip_id', t.id, 'driver_id', t.driver_id, 'arrived_at', rh_ts(now_ts));
    ELSIF p_to = 'IN_PROGRESS' THEN
        UPDATE drivers SET status = 'on_trip', version = version + 1, updated_at = now_ts
         WHERE id = t.driver_id AND status = 'en_route' RETURNING version INTO dver;
        UPDATE trips SET state = 'IN_PROGRESS', started_at = now_ts, version = version + 1, event_seq = event_seq + 1
         WHERE id = t.id RETURNING * INTO t;
        evt := jsonb_build_object('driver_version', dver);
        ev1 := 'trip.started';
        pl1 := jsonb_build_object(
            'trip_id', t.id, 'started_at', rh_ts(now_ts), 'start_location', rh_latlon(t.pickup));
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
        ev1 := 'trip.cancelled';
        pl1 := jsonb_build_object(
            'trip_id', t.id, 'cancelled_at', rh_ts(now_ts), 'cancelled_by', p_role, 'reason', reason,
            'state_before', from_state, 'fee', rh_money(fee, t.currency))
            || jsonb_strip_nulls(jsonb_build_object('driver_id', t.driver_id));
    END IF;
    -- the history row and the outbox rows in one statement (ev2: a second
    -- event, the last sequence number; ev1 then takes the one before)
    WITH e AS (INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
               VALUES (t.id, t.version, from_state, t.state, p_role, p_actor, now_ts, jsonb_strip_nulls(evt)))
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    SELECT v.et, 'ridehaild', t.id, t.id, v.seq, v.pl
      FROM (VALUES (ev1, pl1, t.event_seq - CASE WHEN ev2 IS NULL THEN 0 ELSE 1 END),
                   (ev2, pl2, t.event_seq)) AS v (et, pl, seq)
     WHERE v.et IS NOT NULL
     ORDER BY v.seq;
    status := 200;
    body := jsonb_strip_nulls(jsonb_build_object('driver_version', dver));
END
$$;

CREATE OR REPLACE FUNCTION trip_transition(p_trip uuid, p_to text, p_role text, p_actor text, p_args jsonb,
                                           OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    SELECT x.status, x.body INTO status, body FROM trip_step(p_trip, p_to, p_role, p_actor, p_args) x;
    IF status = 200 THEN
        body := (SELECT trip_json(t, false) FROM trips t WHERE t.id = p_trip) || body;
    END IF;
END
$$;

-- As in 005 (one transaction; p_safe: one subtransaction per item), with
-- the answers' trips built together at the end. A trip named twice in one
-- batch gets its trip built right after each of its steps instead, so each
-- answer shows the trip as that step left it.
CREATE OR REPLACE FUNCTION trip_transitions(p_items jsonb, p_safe boolean)
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
    tid uuid;
    twice uuid[];
    ids uuid[] := '{}';
    sts integer[] := '{}';
    bds jsonb[] := '{}';
BEGIN
    SELECT array_agg(x.id) INTO twice
      FROM (SELECT (value->>'trip_id')::uuid AS id FROM jsonb_array_elements(p_items)
             GROUP BY 1 HAVING count(*) > 1) x;
    FOR it IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        tid := (it->>'trip_id')::uuid;
        IF NOT p_safe THEN
            SELECT x.status, x.body INTO st, bd
              FROM trip_step(tid, it->>'to', it->>'role', it->>'actor', COALESCE(it->'args', '{}')) x;
        ELSE
            BEGIN
                SELECT x.status, x.body INTO st, bd
                  FROM trip_step(tid, it->>'to', it->>'role', it->>'actor', COALESCE(it->'args', '{}')) x;
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
        IF st = 200 AND twice IS NOT NULL AND tid = ANY (twice) THEN
            bd := (SELECT trip_view(t, d) FROM trips t LEFT JOIN drivers d ON d.id = t.driver_id WHERE t.id = tid) || bd;
            st := -200; -- built already
        END IF;
        ids := ids || tid;
        sts := sts || st;
        bds := bds || bd;
        n := n + 1;
    END LOOP;
    RETURN QUERY
        SELECT (u.n - 1)::integer, abs(u.st),
               CASE WHEN u.st = 200 THEN trip_view(t, d) || u.bd ELSE u.bd END
          FROM unnest(ids, sts, bds) WITH ORDINALITY AS u(id, st, bd, n)
          LEFT JOIN trips t ON u.st = 200 AND t.id = u.id
          LEFT JOIN drivers d ON d.id = t.driver_id
         ORDER BY u.n;
END
$$;
