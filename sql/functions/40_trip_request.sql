-- Requesting a ride: a new trip in SEARCHING with its history row and its
-- two events (trip.requested, price.calculated), or the reason why not. A
-- ride for later (scheduled_at) is a trip in SCHEDULED instead, reported by
-- trip.scheduled and price.calculated; its trip.requested comes when its
-- search starts (trip_step_searching(), 40_trip_apply.sql).
-- Tables: sql/005_trips.sql. The daemon (src/trip/trip.c) calls
-- trip_requests() with the requests that arrived together.

-- Why a ride request is not a new trip, if it is not: the answer already
-- given to the same Idempotency-Key (200 replay, or 422 for another
-- request), or the rider's active trip (409). NULLs when it may proceed.
CREATE OR REPLACE FUNCTION trip_request_refusal(p_rider uuid, p_key text, p_body_hash text,
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
     WHERE rider_id = p_rider AND state IN ('SCHEDULED', 'SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS');
    IF FOUND THEN
        status := 409;
        body := jsonb_build_object('reason', 'active_trip', 'active_trip_id', active);
    END IF;
END
$$;

-- The outbox payloads of a new trip (trip.requested, trip.scheduled: in
-- 35_trip_payloads.sql, which the state machine shares), one definition for
-- trip_request() and trip_requests().
CREATE OR REPLACE FUNCTION trip_upfront_payload(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'trip_id', t.id, 'kind', 'upfront',
        'base_fare', round((t.estimate->>'base')::numeric / 100, 2),
        'distance_fare', round((t.estimate->>'distance')::numeric / 100, 2),
        'time_fare', round((t.estimate->>'time')::numeric / 100, 2),
        'booking_fee', round((t.estimate->>'booking_fee')::numeric / 100, 2),
        'surge_multiplier', (t.estimate->>'surge_multiplier')::numeric,
        'total_fare', round(t.fare_quoted / 100.0, 2), 'currency', t.currency)
$$;

-- One request, carefully: what trip_requests() falls back to. p_fare holds
-- the estimate/quote (see trips.estimate) and p_policy the rules in force;
-- p_scheduled_at: a ride for then (SCHEDULED), NULL: now; p_by: the
-- operator who booked it for the rider, NULL: the rider asked.
-- Returns (status, body): 201 and the trip (trip_view(): no driver yet);
-- 200 and the trip for a repeated Idempotency-Key with the same body; 409
-- {active_trip_id}; 422 {reason: idempotency_key_reused}.
CREATE OR REPLACE FUNCTION trip_request(p_rider uuid, p_key text, p_body_hash text, p_vehicle text,
                                        p_pickup_lat double precision, p_pickup_lng double precision,
                                        p_dropoff_lat double precision, p_dropoff_lng double precision,
                                        p_pickup_address text, p_dropoff_address text,
                                        p_currency text, p_quote_id text, p_fare jsonb, p_policy jsonb,
                                        p_scheduled_at timestamptz, p_by text,
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
                           currency, quote_id, fare_quoted, estimate, policy, event_seq,
                           state, scheduled_at, booked_by)
        VALUES (gen_random_uuid(), p_rider, p_vehicle,
                ST_SetSRID(ST_MakePoint(p_pickup_lng, p_pickup_lat), 4326)::geography,
                ST_SetSRID(ST_MakePoint(p_dropoff_lng, p_dropoff_lat), 4326)::geography,
                p_pickup_address, p_dropoff_address, p_currency, p_quote_id, (p_fare->>'total')::bigint,
                p_fare, p_policy, 2,
                CASE WHEN p_scheduled_at IS NULL THEN 'SEARCHING' ELSE 'SCHEDULED' END, p_scheduled_at, p_by)
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
    -- the history row (by the rider, or by the operator who booked it for
    -- them) and both outbox rows in one statement
    WITH e AS (INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
               VALUES (t.id, t.version, NULL, t.state, CASE WHEN p_by IS NULL THEN 'rider' ELSE 'operator' END,
                       COALESCE(p_by, p_rider::text), t.requested_at,
                       jsonb_strip_nulls(jsonb_build_object('booked_for', CASE WHEN p_by IS NOT NULL THEN p_rider END,
                                                            'scheduled_at', rh_ts(t.scheduled_at)))))
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    SELECT f.event_type, 'ridehaild', t.id, t.id, 1, f.payload FROM trip_first_event(t) f
    UNION ALL
    SELECT 'price.calculated', 'ridehaild', t.id, t.id, 2, trip_upfront_payload(t);
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
-- cur, quote, fare, policy, sched (scheduled_at), by (the booking operator)}.
--
-- The plan settings: every statement in it reads or writes rows by key, so
-- the right plan is an index scan whatever the statistics say (a new
-- city's tables are small, then not), and the generic plan: with an array
-- parameter (ids = ANY ($1)) the planner found a custom plan cheaper than
-- the generic one and planned again at every call. Backend CPU per new
-- trip in batches of one, 996 -> 690 us; batches of 16 and 64 unchanged
-- within noise (bench/trip_sql.py, make bench-trips).
CREATE OR REPLACE FUNCTION trip_requests(p_items jsonb, p_safe boolean)
RETURNS TABLE (i integer, status integer, body jsonb)
LANGUAGE plpgsql SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
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
                 WHERE x.rider_id = ANY (riders) AND x.state IN ('SCHEDULED', 'SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS')
            LOOP
                IF st[k] = 0 THEN
                    st[k] := 409;
                    bd[k] := jsonb_build_object('reason', 'active_trip', 'active_trip_id', ptrip);
                END IF;
            END LOOP;
            -- an operator's booking (the item's "by") names a rider who must exist
            FOR k IN
                SELECT e.n FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e (v, n)
                 WHERE e.v ? 'by' AND NOT EXISTS (SELECT FROM riders r WHERE r.id = (e.v->>'rider')::uuid)
            LOOP
                st[k] := 404;
                bd[k] := jsonb_build_object('reason', 'unknown_rider');
            END LOOP;
            -- 2. the new trips
            WITH ins AS (
                INSERT INTO trips (id, rider_id, vehicle_type, pickup, dropoff, pickup_address, dropoff_address,
                                   currency, quote_id, fare_quoted, estimate, policy, event_seq,
                                   state, scheduled_at, booked_by)
                SELECT gen_random_uuid(), (e.v->>'rider')::uuid, e.v->>'vehicle',
                       ST_SetSRID(ST_MakePoint((e.v->>'plng')::float8, (e.v->>'plat')::float8), 4326)::geography,
                       ST_SetSRID(ST_MakePoint((e.v->>'dlng')::float8, (e.v->>'dlat')::float8), 4326)::geography,
                       e.v->>'pa', e.v->>'da', e.v->>'cur', e.v->>'quote', (e.v->'fare'->>'total')::bigint,
                       e.v->'fare', e.v->'policy', 2,
                       CASE WHEN e.v ? 'sched' THEN 'SCHEDULED' ELSE 'SEARCHING' END,
                       (e.v->>'sched')::timestamptz, e.v->>'by'
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
                -- by the rider, or by the operator who booked it for them
                INSERT INTO trip_events (trip_id, seq, from_state, to_state, actor_role, actor_id, at, detail)
                SELECT u.id, u.version, NULL, u.state, CASE WHEN u.booked_by IS NULL THEN 'rider' ELSE 'operator' END,
                       COALESCE(u.booked_by, u.rider_id::text), u.requested_at,
                       jsonb_strip_nulls(jsonb_build_object(
                           'booked_for', CASE WHEN u.booked_by IS NOT NULL THEN u.rider_id END,
                           'scheduled_at', rh_ts(u.scheduled_at)))
                  FROM unnest(ts) AS u;
                INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
                -- (from the rows, not ts[n]: each field read through the
                -- subscript walked the array again, 80,000 instructions a
                -- trip; the trips in the order they were written)
                SELECT v.et, 'ridehaild', u.id, u.id, v.seq, v.pl
                  FROM unnest(ts) AS u
                 CROSS JOIN LATERAL trip_first_event(u) AS f
                 CROSS JOIN LATERAL (VALUES (f.event_type, 1, f.payload),
                                            ('price.calculated', 2, trip_upfront_payload(u)))
                       AS v (et, seq, pl);
            END IF;
        EXCEPTION WHEN unique_violation THEN
            fast := false; -- a race lost: item by item, which answers it
        END;
    END IF;
    IF NOT fast THEN
        FOR k IN 1 .. n_items LOOP
            it := p_items->(k - 1);
            IF it ? 'by' AND NOT EXISTS (SELECT FROM riders r WHERE r.id = (it->>'rider')::uuid) THEN
                st[k] := 404;
                bd[k] := jsonb_build_object('reason', 'unknown_rider');
                CONTINUE;
            END IF;
            BEGIN
                SELECT x.status, x.body INTO s1, b1
                  FROM trip_request((it->>'rider')::uuid, it->>'key', it->>'hash', it->>'vehicle',
                                    (it->>'plat')::float8, (it->>'plng')::float8,
                                    (it->>'dlat')::float8, (it->>'dlng')::float8,
                                    it->>'pa', it->>'da', it->>'cur', it->>'quote', it->'fare', it->'policy',
                                    (it->>'sched')::timestamptz, it->>'by') x;
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
