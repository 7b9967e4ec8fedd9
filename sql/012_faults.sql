-- 012: what faults need (issue 21): the outbox pruned once published.
--
-- Published outbox rows older than events.outbox_retention are deleted in
-- batches by the relay's pruner (src/events/relay.c), oldest publication
-- first; this index makes each batch a range scan whatever the table's size.
-- trip_events stays the permanent history.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- The rider's feed (src/match/feed.c): numbers given to a trip's messages
-- only go forward, across restarts too. The daemon reserves them a block at
-- a time: seq_max is the highest number it may give (no row: the first
-- block, implicit); a trip read back after a restart starts from it. The row
-- goes when the trip ends.
CREATE TABLE rider_feed_seq (
    trip_id uuid PRIMARY KEY REFERENCES trips (id),
    seq_max bigint NOT NULL CHECK (seq_max > 0)
);

-- A live trip whose driver is gone (no socket, no location) for
-- trip.driver_lost_after: the matcher flags it (driver_lost_at), and clears
-- the flag if the driver comes back; each is an event of the trip
-- (trip.driver_lost, trip.driver_returned) for the operator. A flagged trip
-- can be ended by its rider (even IN_PROGRESS) or an operator, reason
-- driver_lost, under the fare rule below (docs/api.md).
ALTER TABLE trips ADD COLUMN driver_lost_at timestamptz;

-- Flags (p_lost) or clears the trip's driver as lost: 1 when that changed
-- something, 0 when the trip is not live with this driver or already so.
CREATE FUNCTION trip_driver_lost(p_trip uuid, p_driver uuid, p_lost boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t trips;
BEGIN
    SELECT * INTO t FROM trips WHERE id = p_trip FOR UPDATE;
    IF NOT FOUND OR t.state NOT IN ('MATCHED', 'ARRIVED', 'IN_PROGRESS') OR t.driver_id IS DISTINCT FROM p_driver
       OR (t.driver_lost_at IS NOT NULL) = p_lost THEN
        RETURN 0;
    END IF;
    UPDATE trips SET driver_lost_at = CASE WHEN p_lost THEN now() END WHERE id = p_trip;
    PERFORM trip_emit(t, CASE WHEN p_lost THEN 'trip.driver_lost' ELSE 'trip.driver_returned' END,
                      jsonb_build_object('trip_id', t.id, 'driver_id', p_driver, 'state', t.state, 'at', rh_ts(now())));
    RETURN 1;
END
$$;

-- The part of a trip in progress that was driven, from the driver's
-- location history since the start: the length of their fixes, and the time
-- from the start to the last fix (0 and 0 without two fixes).
CREATE FUNCTION trip_driven(t trips, OUT dist_m integer, OUT dur_s integer) LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) >= 2
                THEN round(ST_Length(ST_MakeLine(l.location::geometry ORDER BY l.recorded_at)::geography))::integer
                ELSE 0 END,
           CASE WHEN count(*) >= 1
                THEN GREATEST(round(extract(epoch FROM max(l.recorded_at) - t.started_at)), 0)::integer
                ELSE 0 END
      FROM driver_locations l
     WHERE l.trip_id = t.id AND l.recorded_at >= t.started_at
$$;

-- The state machine, as in 009, with the two changes (012) for a trip whose
-- driver is gone: its rider may end it IN_PROGRESS too, and a rider's or an
-- operator's cancellation of it is free before the pickup and costs the part
-- driven after it (the metered fare of trip_driven(), never more than the
-- upfront price).
CREATE OR REPLACE FUNCTION trip_apply(p_items jsonb, p_lock boolean)
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
                 OR (t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' AND p_role IN ('operator', 'system'))
                 -- (012) a rider ends a trip whose driver is gone
                 OR (t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' AND p_role = 'rider'
                     AND t.driver_lost_at IS NOT NULL)) THEN
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
                IF t.driver_lost_at IS NOT NULL AND p_role IN ('rider', 'operator') THEN
                    -- (012) the driver is gone: no cancellation fee; a trip
                    -- in progress costs the part driven (trip_driven_fare())
                    reason := 'driver_lost';
                    IF t.state = 'IN_PROGRESS' THEN
                        SELECT x.dist_m, x.dur_s INTO dist, dur FROM trip_driven(t) x;
                        t.metered_distance_m := dist;
                        t.metered_duration_s := dur;
                        t.fare_metered := trip_metered_fare(t.estimate, dist, dur);
                        fee := LEAST(t.fare_metered, t.fare_quoted);
                    END IF;
                ELSIF p_role = 'rider' AND t.state IN ('MATCHED', 'ARRIVED')
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
