-- The trip state machine, in one place: trip_apply() is the only code that
-- changes a trip's state (tables: sql/005_trips.sql). The daemon (src/trip)
-- validates input and calls trip_transitions() with the transitions that
-- arrived together; the matcher sends its MATCHED the same way. Each
-- transition updates the trip on (state, version), appends a trip_events
-- row and the outbox rows that report it, and moves the driver's status and
-- version, in the transaction of its batch. Constraints, not only code,
-- hold the rules: one active trip per rider and per driver (partial unique
-- indexes), legal states (CHECK), money in integer minor units (domains).
--
-- An item: {trip_id, to, role, actor, args}. `to` is the target state;
-- role/actor who asks (rider, driver, operator, system: the account id, or
-- the operator's name); args:
--   expected_version  refuse unless the trip is at this version (optimistic)
--   driver_id, driver_version  (MATCHED) the driver, reserved on (status, version)
--   eta_s, distance_m, score   (MATCHED) the dispatch decision, for the event
--   distance_m, duration_s, end_lat, end_lng  (COMPLETED) the metered trip
--   reason  (CANCELLED)
--   only_from  refuse (409 state_changed) unless the trip is in this state
-- Its answer (status, body): 200 and the trip as trip_view() shows it, with
-- driver_version when the step moved the driver, or repeated: true when the
-- trip was already in that state by the same hand (the no-op answer); 404
-- not found or not the caller's; 409 {reason, state} refused in the current
-- state.
--
-- A batch is a handful of statements, not a handful per transition (every
-- statement is a new executor start, and PostgreSQL prepares a table's
-- constraints again at each): trip_apply()
--   1. reads every trip of the batch (and every driver it names or has) in
--      one statement each;
--   2. runs the steps in item order on those rows in memory (a trip named
--      twice sees its own earlier step): trip_step_refusal() says whether
--      the item may go; then the step of its target state changes the trip
--      (trip_step_matched() ... trip_step_cancelled(), one per transition,
--      each with the events that report it beside it), and trip_apply()
--      moves the driver, numbers the trip's version and events, and
--      collects the rows to write;
--   3. writes every changed trip, every changed driver, every history row
--      and every outbox row with one statement each, and answers each item
--      with the trip as its step left it.
-- p_lock reads the rows FOR UPDATE (ids in order), so nothing can change
-- them before the writes. Without it the reads take no lock and each write
-- is checked against what was read (trips: version and event_seq; drivers:
-- version), optimistically: a row changed meanwhile fails the whole batch
-- with serialization_failure, and the daemon runs it again item by item,
-- with locks (trip_transitions(items, true)).

-- ------------------------------------------------------------ the steps
-- A transition is two short functions side by side: its step,
-- trip_step_<state>(t, role, args, now), the trip row as the transition
-- leaves it, and its events, trip_step_<state>_events(t, from, role,
-- args), the outbox rows that report it, in order, read off the changed
-- row. A step neither reads nor writes a table: trip_apply() does, once per
-- batch. What the steps share is below them: the refusals, the driver's
-- status, the history row's detail.
--
-- Why two functions and not one answering the row and its events: a
-- PL/pgSQL function that hands back a row costs about 4,000 instructions
-- more than the change written in place, one that hands back a record
-- (OUT parameters: the row, the events) about 23,000 more, 3% of a
-- transition (callgrind, bench/trip_sql_ir.sh). The events are SQL
-- expressions, which the planner inlines into trip_apply() at no cost.

-- An event of trip t, as trip_apply() writes it to the outbox (it numbers
-- aggregate_seq; the other columns take their defaults).
CREATE OR REPLACE FUNCTION trip_outbox_row(t trips, p_type text, p_payload jsonb) RETURNS outbox
LANGUAGE sql STABLE AS $$
    -- (id, event_id, event_type, event_version, occurred_at, producer, correlation_id, aggregate_id,
    --  aggregate_seq, payload, published_at)
    SELECT ROW(NULL, NULL, p_type, NULL, NULL, 'ridehaild', t.id, t.id, NULL, p_payload, NULL)::outbox
$$;

-- SCHEDULED -> SEARCHING: a ride for later is searched for now
-- (match.schedule_lead before its time, by the daemon's scheduler). Its
-- trip.requested goes out now, as a ride requested for now has it at once.
CREATE OR REPLACE FUNCTION trip_step_searching(t trips, p_role text, p_args jsonb, p_now timestamptz) RETURNS trips
LANGUAGE plpgsql AS $$
BEGIN
    t.state := 'SEARCHING';
    t.search_started_at := p_now;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION trip_step_searching_events(t trips, p_from text, p_role text, p_args jsonb)
RETURNS outbox[] LANGUAGE sql STABLE AS $$
    SELECT ARRAY[trip_outbox_row(t, 'trip.requested', trip_scheduled_payload(t)
                                 || jsonb_build_object('search_started_at', rh_ts(t.search_started_at)))]
$$;

-- SEARCHING -> MATCHED: the driver named (args.driver_id) takes the trip;
-- trip_step_refusal() has found them available, or offered it, for its
-- vehicle type. The event carries the dispatch decision (args eta_s,
-- distance_m, score) when there was one, and who assigned the driver.
CREATE OR REPLACE FUNCTION trip_step_matched(t trips, p_role text, p_args jsonb, p_now timestamptz) RETURNS trips
LANGUAGE plpgsql AS $$
BEGIN
    t.state := 'MATCHED';
    t.driver_id := (p_args->>'driver_id')::uuid;
    t.matched_at := p_now;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION trip_step_matched_events(t trips, p_from text, p_role text, p_args jsonb) RETURNS outbox[]
LANGUAGE sql STABLE AS $$
    -- (one object, its absent members stripped: the others are never null;
    -- built in pieces and merged, it cost 30,000 instructions more)
    SELECT ARRAY[trip_outbox_row(t, 'trip.accepted', jsonb_strip_nulls(jsonb_build_object(
        'trip_id', t.id, 'driver_id', t.driver_id, 'accepted_at', rh_ts(t.matched_at),
        'eta_seconds', (p_args->>'eta_s')::integer, 'distance_m', (p_args->>'distance_m')::integer,
        'match_score', (p_args->>'score')::numeric, 'assigned_by', p_role)))]
$$;

-- MATCHED -> ARRIVED: the driver is at the pickup (a driver's no-show wait
-- counts from here).
CREATE OR REPLACE FUNCTION trip_step_arrived(t trips, p_role text, p_args jsonb, p_now timestamptz) RETURNS trips
LANGUAGE plpgsql AS $$
BEGIN
    t.state := 'ARRIVED';
    t.arrived_at := p_now;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION trip_step_arrived_events(t trips, p_from text, p_role text, p_args jsonb) RETURNS outbox[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY[trip_outbox_row(t, 'trip.driver_arrived',
        jsonb_build_object('trip_id', t.id, 'driver_id', t.driver_id, 'arrived_at', rh_ts(t.arrived_at)))]
$$;

-- ARRIVED -> IN_PROGRESS: the rider is aboard.
CREATE OR REPLACE FUNCTION trip_step_in_progress(t trips, p_role text, p_args jsonb, p_now timestamptz) RETURNS trips
LANGUAGE plpgsql AS $$
BEGIN
    t.state := 'IN_PROGRESS';
    t.started_at := p_now;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION trip_step_in_progress_events(t trips, p_from text, p_role text, p_args jsonb)
RETURNS outbox[] LANGUAGE sql STABLE AS $$
    SELECT ARRAY[trip_outbox_row(t, 'trip.started',
        jsonb_build_object('trip_id', t.id, 'started_at', rh_ts(t.started_at), 'start_location', rh_latlon(t.pickup)))]
$$;

-- IN_PROGRESS -> COMPLETED, metered as args say (distance_m, duration_s;
-- end_lat and end_lng, else the dropoff). The upfront price is honoured
-- unless the trip deviated from the estimate beyond the policy's tolerance
-- (either way): then the metered fare is charged and the trip flagged for
-- review. The waiting fee (the driver's wait at the pickup past the free
-- time, 30_trip_fare.sql) comes on top either way. Two events: the trip
-- finished, and its final price.
CREATE OR REPLACE FUNCTION trip_step_completed(t trips, p_role text, p_args jsonb, p_now timestamptz) RETURNS trips
LANGUAGE plpgsql AS $$
DECLARE
    dist integer := (p_args->>'distance_m')::integer;
    dur integer := (p_args->>'duration_s')::integer;
    tol numeric := (t.policy->>'fare_tolerance')::numeric;
    est_d numeric := GREATEST((t.estimate->>'distance_m')::numeric, 1);
    est_t numeric := GREATEST((t.estimate->>'duration_s')::numeric, 1);
    waiting bigint := trip_waiting_fee(t.policy, t.arrived_at, t.started_at);
BEGIN
    t.state := 'COMPLETED';
    t.completed_at := p_now;
    t.metered_distance_m := dist;
    t.metered_duration_s := dur;
    t.fare_metered := trip_metered_fare(t.estimate, dist, dur) + waiting;
    t.needs_review := abs(dist - est_d) > tol * est_d OR abs(dur - est_t) > tol * est_t;
    t.fare_final := CASE WHEN t.needs_review THEN t.fare_metered ELSE t.fare_quoted + waiting END;
    t.end_location := CASE WHEN p_args ? 'end_lat' THEN
        ST_SetSRID(ST_MakePoint((p_args->>'end_lng')::float8, (p_args->>'end_lat')::float8), 4326)::geography
        ELSE t.dropoff END;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION trip_step_completed_events(t trips, p_from text, p_role text, p_args jsonb)
RETURNS outbox[] LANGUAGE sql STABLE AS $$
    SELECT ARRAY[
        trip_outbox_row(t, 'trip.finished', jsonb_build_object(
            'trip_id', t.id, 'finished_at', rh_ts(t.completed_at), 'end_location', rh_latlon(t.end_location),
            'distance_km', round(t.metered_distance_m / 1000.0, 3), 'duration_sec', t.metered_duration_s,
            'fare', rh_money(t.fare_final, t.currency))),
        trip_outbox_row(t, 'price.calculated', jsonb_build_object(
            'trip_id', t.id, 'kind', 'final',
            'base_fare', round((t.estimate->>'base')::numeric / 100, 2),
            'distance_fare', round(trip_fare_distance(t.estimate, t.metered_distance_m) / 100.0, 2),
            'time_fare', round(trip_fare_time(t.estimate, t.metered_duration_s) / 100.0, 2),
            'booking_fee', round((t.estimate->>'booking_fee')::numeric / 100, 2),
            'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
            'total_fare', round(t.fare_final / 100.0, 2), 'currency', t.currency,
            'upfront_fare', round(t.fare_quoted / 100.0, 2), 'needs_review', t.needs_review))]
$$;

-- -> CANCELLED, by p_role for args.reason (else the role's own reason).
-- A scheduled ride is cancelled free (it has no driver yet). The rider pays the policy's cancel_fee once the grace after the match is
-- over; a driver who waited out the no-show time at the pickup cancels for
-- rider_no_show, and the rider pays the no_show_fee. A trip whose driver is
-- gone (driver_lost_at), ended by its rider or an operator, is cancelled for
-- driver_lost: free before the pickup, and in progress the part driven
-- (the metered fare of trip_driven(), never more than the upfront price).
CREATE OR REPLACE FUNCTION trip_step_cancelled(t trips, p_role text, p_args jsonb, p_now timestamptz) RETURNS trips
LANGUAGE plpgsql AS $$
DECLARE
    pol jsonb := t.policy;
BEGIN
    t.cancel_fee := 0;
    t.cancel_reason := COALESCE(p_args->>'reason', CASE p_role WHEN 'rider' THEN 'rider_cancelled'
                                                                WHEN 'driver' THEN 'driver_cancelled'
                                                                ELSE 'operator_cancelled' END);
    IF t.driver_lost_at IS NOT NULL AND p_role IN ('rider', 'operator') THEN
        t.cancel_reason := 'driver_lost';
        IF t.state = 'IN_PROGRESS' THEN
            SELECT x.dist_m, x.dur_s INTO t.metered_distance_m, t.metered_duration_s FROM trip_driven(t) x;
            t.fare_metered := trip_metered_fare(t.estimate, t.metered_distance_m, t.metered_duration_s);
            t.cancel_fee := LEAST(t.fare_metered, t.fare_quoted);
        END IF;
    ELSIF p_role = 'rider' AND t.state IN ('MATCHED', 'ARRIVED')
       AND p_now > t.matched_at + make_interval(secs => (pol->>'cancel_grace_s')::float8) THEN
        t.cancel_fee := (pol->>'cancel_fee')::bigint;
    ELSIF p_role = 'driver' AND t.state = 'ARRIVED'
       AND p_now >= t.arrived_at + make_interval(secs => (pol->>'no_show_wait_s')::float8) THEN
        t.cancel_fee := (pol->>'no_show_fee')::bigint;
        t.cancel_reason := 'rider_no_show';
    END IF;
    t.state := 'CANCELLED';
    t.cancelled_at := p_now;
    t.cancelled_by := p_role;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION trip_step_cancelled_events(t trips, p_from text, p_role text, p_args jsonb)
RETURNS outbox[] LANGUAGE sql STABLE AS $$
    SELECT ARRAY[trip_outbox_row(t, 'trip.cancelled', jsonb_build_object(
        'trip_id', t.id, 'cancelled_at', rh_ts(t.cancelled_at), 'cancelled_by', t.cancelled_by,
        'reason', t.cancel_reason, 'state_before', p_from, 'fee', rh_money(t.cancel_fee, t.currency))
        || jsonb_strip_nulls(jsonb_build_object('driver_id', t.driver_id)))]
$$;

-- Whether an item's step may run: NULL when it may, else the item's answer
-- as {status, ...body}, in this order: 404 {reason: not_found}, no such
-- trip or not the caller's (a rider's own trip; a driver's own, or for
-- MATCHED the driver named being the caller); the same transition again is
-- 200 {repeated: true} and changes nothing (409 already_matched if it names
-- another driver); 409 {reason, state, ...}: state_changed (args.only_from),
-- version_conflict (args.expected_version), an edge the machine does not
-- have (already_matched, trip_in_progress: no rider or driver cancels a
-- trip in progress, unless the rider's driver is gone, trip_finished,
-- illegal_transition), and for MATCHED driver_unavailable unless the driver
-- named is available (or offered this trip), not disabled, of the trip's
-- vehicle type and at args.driver_version when given. t and d are the rows
-- as the batch has them (NULL: not found).
CREATE OR REPLACE FUNCTION trip_step_refusal(t trips, d drivers, p_to text, p_role text, p_actor text, p_args jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.id IS NULL OR (p_role = 'rider' AND t.rider_id::text <> p_actor)
             OR (p_role = 'driver' AND p_to <> 'MATCHED' AND (t.driver_id IS NULL OR t.driver_id::text <> p_actor))
             OR (p_role = 'driver' AND p_to = 'MATCHED' AND (p_args->>'driver_id') IS DISTINCT FROM p_actor) THEN
            jsonb_build_object('status', 404, 'reason', 'not_found')
        WHEN t.state = p_to AND p_to = 'MATCHED' AND t.driver_id IS DISTINCT FROM (p_args->>'driver_id')::uuid THEN
            jsonb_build_object('status', 409, 'reason', 'already_matched', 'state', t.state)
        WHEN t.state = p_to THEN
            jsonb_build_object('status', 200, 'repeated', true)
        WHEN p_args ? 'only_from' AND t.state <> p_args->>'only_from' THEN
            jsonb_build_object('status', 409, 'reason', 'state_changed', 'state', t.state)
        WHEN p_args ? 'expected_version' AND (p_args->>'expected_version')::integer <> t.version THEN
            jsonb_build_object('status', 409, 'reason', 'version_conflict', 'state', t.state, 'version', t.version)
        WHEN NOT ((t.state = 'SEARCHING' AND p_to = 'MATCHED')
               OR (t.state = 'MATCHED' AND p_to = 'ARRIVED')
               OR (t.state = 'ARRIVED' AND p_to = 'IN_PROGRESS')
               OR (t.state = 'IN_PROGRESS' AND p_to = 'COMPLETED')
               OR (t.state = 'SCHEDULED' AND p_to = 'SEARCHING' AND p_role = 'system')
               OR (t.state IN ('SCHEDULED', 'SEARCHING', 'MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role <> 'driver')
               OR (t.state IN ('MATCHED', 'ARRIVED') AND p_to = 'CANCELLED' AND p_role = 'driver')
               OR (t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' AND p_role IN ('operator', 'system'))
               -- a rider ends a trip whose driver is gone
               OR (t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' AND p_role = 'rider'
                   AND t.driver_lost_at IS NOT NULL)) THEN
            jsonb_build_object('status', 409, 'reason',
                               CASE WHEN t.state = 'MATCHED' AND p_to = 'MATCHED' THEN 'already_matched'
                                    WHEN t.state = 'IN_PROGRESS' AND p_to = 'CANCELLED' THEN 'trip_in_progress'
                                    WHEN t.state IN ('COMPLETED', 'CANCELLED') THEN 'trip_finished'
                                    ELSE 'illegal_transition' END,
                               'state', t.state, 'to', p_to)
        WHEN p_to = 'MATCHED' AND (d.id IS NULL OR d.status NOT IN ('available', 'offered') OR d.disabled
                                   OR d.vehicle_type <> t.vehicle_type
                                   OR (p_args ? 'driver_version' AND d.version <> (p_args->>'driver_version')::bigint)) THEN
            jsonb_build_object('status', 409, 'reason', 'driver_unavailable', 'state', t.state)
    END
$$;

-- The driver's status after a transition to p_to, from p_status: matched,
-- they are en route; the trip started, on it; the trip over, available
-- again. (Otherwise as it was: a driver whose status moved gets a new
-- version.)
CREATE OR REPLACE FUNCTION trip_step_driver_status(p_to text, p_status text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_to = 'MATCHED' THEN 'en_route'
                WHEN p_to = 'IN_PROGRESS' AND p_status = 'en_route' THEN 'on_trip'
                WHEN p_to IN ('COMPLETED', 'CANCELLED') AND p_status IN ('en_route', 'on_trip') THEN 'available'
                ELSE p_status END
$$;

-- What a transition's history row tells besides the driver's new version:
-- a completed trip's final fare and whether it needs review, a
-- cancellation's reason and fee.
CREATE OR REPLACE FUNCTION trip_step_detail(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE t.state WHEN 'COMPLETED' THEN jsonb_build_object('fare_final', t.fare_final, 'needs_review', t.needs_review)
                        WHEN 'CANCELLED' THEN jsonb_build_object('reason', t.cancel_reason, 'fee', t.cancel_fee)
                        ELSE '{}' END
$$;

-- ------------------------------------------------------------ the batch

CREATE OR REPLACE FUNCTION trip_apply(p_items jsonb, p_lock boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    now_ts timestamptz := now();
    -- the batch's rows: trips and drivers by id, as the steps leave them,
    -- with their versions as read (the writes check them) and whether a
    -- step changed them
    ts trips[];
    tmap jsonb;           -- trip id -> index in ts
    tv0 integer[];
    te0 integer[];        -- (event_seq, as read)
    tdirty boolean[];
    ds drivers[];
    dmap jsonb;
    dv0 bigint[];
    ddirty boolean[];
    n_t integer := 0;     -- changed trips, drivers
    n_d integer := 0;
    cnt integer;
    hist trip_events[] := '{}';  -- the rows to write, in order
    obx outbox[] := '{}';
    -- one item
    it jsonb;
    n integer;
    to_state text;
    by_role text;
    args jsonb;
    tp integer;
    dp integer;
    t trips;
    d drivers;
    from_state text;
    evs outbox[];
    o outbox;
    dstatus text;
    dver bigint;
BEGIN
    -- 1. the rows
    -- (= ANY of an array: an index scan whatever the planner thinks of the
    -- table's size when the plan is cached)
    IF p_lock THEN
        SELECT array_agg(l.t ORDER BY (l.t).id) INTO ts
          FROM (SELECT t FROM trips t
                 WHERE t.id = ANY (ARRAY(SELECT (value->>'trip_id')::uuid FROM jsonb_array_elements(p_items)))
                 ORDER BY t.id FOR UPDATE) l;
    ELSE
        SELECT array_agg(t ORDER BY t.id) INTO ts FROM trips t
         WHERE t.id = ANY (ARRAY(SELECT (value->>'trip_id')::uuid FROM jsonb_array_elements(p_items)));
    END IF;
    SELECT COALESCE(jsonb_object_agg(u.id, u.ordinality), '{}'), array_agg(u.version ORDER BY u.ordinality),
           array_agg(u.event_seq ORDER BY u.ordinality), array_agg(false)
      INTO tmap, tv0, te0, tdirty
      FROM unnest(ts) WITH ORDINALITY AS u;
    -- the drivers the items name (args.driver_id: MATCHED) and the trips' drivers
    IF p_lock THEN
        SELECT array_agg(l.d ORDER BY (l.d).id) INTO ds
          FROM (SELECT d FROM drivers d
                 WHERE d.id = ANY (ARRAY(SELECT (value->'args'->>'driver_id')::uuid FROM jsonb_array_elements(p_items)
                                         UNION ALL SELECT x.driver_id FROM unnest(ts) x))
                 ORDER BY d.id FOR UPDATE) l;
    ELSE
        SELECT array_agg(d ORDER BY d.id) INTO ds FROM drivers d
         WHERE d.id = ANY (ARRAY(SELECT (value->'args'->>'driver_id')::uuid FROM jsonb_array_elements(p_items)
                                 UNION ALL SELECT x.driver_id FROM unnest(ts) x));
    END IF;
    SELECT COALESCE(jsonb_object_agg(u.id, u.ordinality), '{}'), array_agg(u.version ORDER BY u.ordinality),
           array_agg(false)
      INTO dmap, dv0, ddirty
      FROM unnest(ds) WITH ORDINALITY AS u;

    -- 2. the steps, in item order, each answered as it goes (the answers
    -- reach the caller when the function returns, after the writes)
    FOR it, n IN SELECT value, ordinality FROM jsonb_array_elements(p_items) WITH ORDINALITY LOOP
        to_state := it->>'to';
        by_role := it->>'role';
        args := COALESCE(it->'args', '{}');
        tp := (tmap->>((it->>'trip_id')::uuid::text))::integer;
        t := CASE WHEN tp IS NOT NULL THEN ts[tp] END;
        -- the driver: the one named (MATCHED) or the trip's
        dp := (dmap->>(CASE WHEN to_state = 'MATCHED' THEN (args->>'driver_id')::uuid ELSE t.driver_id END)::text)::integer;
        d := CASE WHEN dp IS NOT NULL THEN ds[dp] END;
        i := n - 1;
        body := trip_step_refusal(t, d, to_state, by_role, it->>'actor', args);
        status := (body->>'status')::integer;
        body := body - 'status';
        IF status IS NULL THEN
            from_state := t.state;
            CASE to_state
                WHEN 'SEARCHING' THEN
                    t := trip_step_searching(t, by_role, args, now_ts);
                    evs := trip_step_searching_events(t, from_state, by_role, args);
                WHEN 'MATCHED' THEN
                    t := trip_step_matched(t, by_role, args, now_ts);
                    evs := trip_step_matched_events(t, from_state, by_role, args);
                WHEN 'ARRIVED' THEN
                    t := trip_step_arrived(t, by_role, args, now_ts);
                    evs := trip_step_arrived_events(t, from_state, by_role, args);
                WHEN 'IN_PROGRESS' THEN
                    t := trip_step_in_progress(t, by_role, args, now_ts);
                    evs := trip_step_in_progress_events(t, from_state, by_role, args);
                WHEN 'COMPLETED' THEN
                    t := trip_step_completed(t, by_role, args, now_ts);
                    evs := trip_step_completed_events(t, from_state, by_role, args);
                WHEN 'CANCELLED' THEN
                    t := trip_step_cancelled(t, by_role, args, now_ts);
                    evs := trip_step_cancelled_events(t, from_state, by_role, args);
            END CASE;
            -- the trip's next version, and its events' sequence numbers
            t.version := t.version + 1;
            FOREACH o IN ARRAY evs LOOP
                t.event_seq := t.event_seq + 1;
                o.aggregate_seq := t.event_seq;
                obx := obx || o;
            END LOOP;
            ts[tp] := t;
            IF NOT tdirty[tp] THEN
                tdirty[tp] := true;
                n_t := n_t + 1;
            END IF;
            -- a driver whose status moves gets a new version
            dver := NULL;
            dstatus := trip_step_driver_status(to_state, d.status);
            IF dp IS NOT NULL AND dstatus IS DISTINCT FROM d.status THEN
                d.status := dstatus;
                d.version := d.version + 1;
                d.updated_at := now_ts;
                dver := d.version;
                ds[dp] := d;
                IF NOT ddirty[dp] THEN
                    ddirty[dp] := true;
                    n_d := n_d + 1;
                END IF;
            END IF;
            -- the history row: (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
            hist := hist || ROW(t.id, t.version, from_state, t.state, by_role, it->>'actor', now_ts,
                                jsonb_strip_nulls(jsonb_build_object('driver_version', dver) || trip_step_detail(t)))::trip_events;
            status := 200;
            body := jsonb_strip_nulls(jsonb_build_object('driver_version', dver));
        END IF;
        -- a 200 answer holds the trip as this step left it (a repeat: as it is)
        IF status = 200 THEN
            dp := (dmap->>(t.driver_id::text))::integer;
            body := trip_view(t, CASE WHEN dp IS NOT NULL THEN ds[dp] END) || body;
        END IF;
        RETURN NEXT;
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
               cancelled_at = u.cancelled_at, search_started_at = u.search_started_at
          FROM unnest(ts) WITH ORDINALITY AS u
         WHERE tdirty[u.ordinality] AND x.id = u.id
           AND x.version = tv0[u.ordinality] AND x.event_seq = te0[u.ordinality];
        GET DIAGNOSTICS cnt = ROW_COUNT;
        IF cnt <> n_t THEN
            RAISE EXCEPTION 'trip_apply: % of % trips changed since they were read', n_t - cnt, n_t
                USING ERRCODE = 'serialization_failure';
        END IF;
        INSERT INTO trip_events SELECT * FROM unnest(hist);
        INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
        SELECT u.event_type, u.producer, u.correlation_id, u.aggregate_id, u.aggregate_seq, u.payload
          FROM unnest(obx) WITH ORDINALITY AS u
         ORDER BY u.ordinality;
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
END
$$;

-- A batch of MATCHED transitions (the matcher's), set-based like the ride
-- requests: the refusals read with one statement, then every trip, driver,
-- history row and outbox row written with one statement, and the answers
-- made in it, instead of trip_apply()'s loop over the items. The steps and
-- their events are the same functions (trip_step_matched(),
-- trip_step_matched_events(), trip_step_refusal(), trip_step_driver_status()),
-- so what is written and answered is what trip_apply() writes and answers.
-- It takes a batch only when every item goes ahead on its own rows: each a
-- MATCHED, none refused, no trip or driver named twice, every driver's
-- status moving; any other batch goes to trip_apply() as it is. Without
-- locks, as trip_apply(p_items, false): a trip or driver changed since it
-- was read fails the batch with serialization_failure.
--
-- Instructions per MATCHED (bench/trip_sql_ir.sh): in batches of 32,
-- 822,960 through trip_apply()'s loop, 800,954 here; alone, 2,314,988 and
-- 2,106,089. What the rest is: docs/benchmarks.md.
CREATE OR REPLACE FUNCTION trip_apply_matched(p_items jsonb)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $$
#variable_conflict use_column
DECLARE
    now_ts timestamptz := now();
    n_items integer := jsonb_array_length(p_items);
    ts trips[];       -- the trips as their step leaves them (version and
                      -- event_seq as read: the writes check them)
    dids uuid[];
    dv0 bigint[];
    froms text[];
    roles text[];
    actors text[];
    argss jsonb[];
    ok boolean;
    cnt integer;
BEGIN
    SELECT bool_and(x.go) AND count(DISTINCT x.tid) = n_items AND count(DISTINCT x.did) = n_items
               AND count(*) = n_items,
           array_agg(trip_step_matched(x.t, x.role, x.args, now_ts) ORDER BY x.n),
           array_agg(x.did ORDER BY x.n), array_agg((x.d).version ORDER BY x.n),
           array_agg((x.t).state ORDER BY x.n), array_agg(x.role ORDER BY x.n),
           array_agg(x.actor ORDER BY x.n), array_agg(x.args ORDER BY x.n)
      INTO ok, ts, dids, dv0, froms, roles, actors, argss
      FROM (SELECT e.n, e.tid, e.did, e.role, e.actor, e.args, t, d,
                   e.too = 'MATCHED' AND t.id IS NOT NULL AND d.id IS NOT NULL
                   AND trip_step_refusal(t, d, e.too, e.role, e.actor, e.args) IS NULL
                   AND trip_step_driver_status(e.too, d.status) IS DISTINCT FROM d.status AS go
              FROM (SELECT v.n, (v.v->>'trip_id')::uuid AS tid, v.v->>'to' AS too, v.v->>'role' AS role,
                           v.v->>'actor' AS actor, COALESCE(v.v->'args', '{}') AS args,
                           (v.v->'args'->>'driver_id')::uuid AS did
                      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS v (v, n)) e
              LEFT JOIN trips t ON t.id = e.tid
              LEFT JOIN drivers d ON d.id = e.did) x;
    IF ok IS NOT TRUE THEN
        RETURN QUERY SELECT a.i, a.status, a.body FROM trip_apply(p_items, false) a;
        RETURN;
    END IF;
    -- the writes, and the answers: the trip as its step left it (its next
    -- version, its one event numbered) with its driver's new row
    RETURN QUERY
    WITH ut AS (
        UPDATE trips x
           SET state = u.state, driver_id = u.driver_id, version = u.version + 1, event_seq = u.event_seq + 1,
               fare_final = u.fare_final, fare_metered = u.fare_metered,
               metered_distance_m = u.metered_distance_m, metered_duration_s = u.metered_duration_s,
               needs_review = u.needs_review, cancelled_by = u.cancelled_by, cancel_reason = u.cancel_reason,
               cancel_fee = u.cancel_fee, end_location = u.end_location, matched_at = u.matched_at,
               arrived_at = u.arrived_at, started_at = u.started_at, completed_at = u.completed_at,
               cancelled_at = u.cancelled_at
          FROM unnest(ts) WITH ORDINALITY AS u
         WHERE x.id = u.id AND x.version = u.version AND x.event_seq = u.event_seq
        RETURNING u.ordinality AS n, x AS t),
    ud AS (
        UPDATE drivers y
           SET status = trip_step_driver_status('MATCHED', y.status), version = y.version + 1,
               updated_at = now_ts
          FROM unnest(dids, dv0) WITH ORDINALITY AS u (id, version, n)
         WHERE y.id = u.id AND y.version = u.version
        RETURNING u.n, y AS d),
    j AS (
        SELECT ut.n, froms[ut.n] AS from_state, roles[ut.n] AS role, actors[ut.n] AS actor, argss[ut.n] AS args,
               ut.t, ud.d
          FROM ut JOIN ud ON ud.n = ut.n),
    h AS (
        INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
        SELECT (j.t).id, (j.t).version, j.from_state, (j.t).state, j.role, j.actor, now_ts,
               jsonb_strip_nulls(jsonb_build_object('driver_version', (j.d).version) || trip_step_detail(j.t))
          FROM j),
    o AS (
        INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
        SELECT e.event_type, e.producer, e.correlation_id, e.aggregate_id, (j.t).event_seq, e.payload
          FROM j CROSS JOIN LATERAL unnest(trip_step_matched_events(j.t, j.from_state, j.role, j.args)) AS e
         ORDER BY j.n)
    SELECT (j.n - 1)::integer, 200,
           jsonb_build_object('trip_row', trip_row(j.t, j.d), 'driver_version', (j.d).version)
      FROM j ORDER BY j.n;
    GET DIAGNOSTICS cnt = ROW_COUNT;
    IF cnt <> n_items THEN
        RAISE EXCEPTION 'trip_apply_matched: % of % trips or drivers changed since they were read',
            n_items - cnt, n_items USING ERRCODE = 'serialization_failure';
    END IF;
END
$$;

-- One transaction for the batch; p_safe: one subtransaction per item, each
-- with its rows locked, so that one failing item fails alone: a race the
-- unique indexes caught is that item's 409, a deadlock its 503.
--
-- The plan settings, as for trip_requests(): index scans and generic plans
-- whatever the statistics say. Backend CPU per MATCHED transition in
-- batches of one, 1,576 -> 1,016 us (bench/trip_sql.py).
CREATE OR REPLACE FUNCTION trip_transitions(p_items jsonb, p_safe boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
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
        IF p_items->0->>'to' = 'MATCHED' THEN -- the matcher's batch (another goes to trip_apply())
            RETURN QUERY SELECT a.i, a.status, a.body FROM trip_apply_matched(p_items) a;
        ELSE
            RETURN QUERY SELECT a.i, a.status, a.body FROM trip_apply(p_items, false) a;
        END IF;
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
