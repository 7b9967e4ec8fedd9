-- A trip as the API shows it: the database answers the row the view is
-- made of, the daemon renders the view (src/trip/view.c).
--
-- Every ride request and every transition answers with its trip, so this is
-- on the busiest path. Built in the database as nested jsonb (eight
-- jsonb_build_object() calls, the breakdown as five deletions from the
-- estimate, each point its own object merged with its address, then
-- jsonb_strip_nulls() over the whole) it cost 287,000 instructions per trip
-- (callgrind, a single-user backend), the largest single cost of a booking
-- in the database; as the row, per item in batches of 32, MATCHED 1,024,000
-- -> 805,000 and a new trip 1,124,000 -> 956,000 (bench/trip_sql_ir.sh).
-- Before that, as PL/pgSQL whose driver sub-select took a parameter, its
-- plan was a custom one, planned again on every call, and so was every
-- caller's: about half of a transition's time in the database.

-- The trip and its driver row (NULL: none) as {"trip_row": [...]}: the
-- columns the view is made of, in this order (src/trip/view.c reads them by
-- position and builds the object the view always was):
--    0 id             1 state           2 version        3 rider_id
--    4 vehicle_type   5 pickup lat      6 pickup lng     7 pickup_address
--    8 dropoff lat    9 dropoff lng    10 dropoff_address
--   11 currency      12 fare_quoted    13 fare_final    14 fare_metered
--   15 quote_id      16 estimate       17 needs_review
--   18 metered_distance_m  19 metered_duration_s
--   20 cancelled_by  21 cancel_reason  22 cancel_fee
--   23 requested_at  24 matched_at     25 arrived_at    26 started_at
--   27 completed_at  28 cancelled_at   (rh_ts: RFC 3339, milliseconds, UTC)
--   29 driver id     30 driver name    31 vehicle type  32 make
--   33 model         34 color          35 plate
--   36 rating average (2 decimals; NULL without ratings)  37 rating count
-- What the view rounds (coordinates to 7 decimals, the rating average to 2)
-- is rounded here, so the values are the view's to the last digit. One SQL
-- expression: the planner inlines it into its callers, which merge their
-- own members into the object ({timeline}, {driver_version}, {repeated}, ...).
CREATE OR REPLACE FUNCTION trip_view(t trips, d drivers) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('trip_row', jsonb_build_array(
        t.id, t.state, t.version, t.rider_id, t.vehicle_type,
        round(ST_Y(t.pickup::geometry)::numeric, 7)::float8, round(ST_X(t.pickup::geometry)::numeric, 7)::float8,
        t.pickup_address,
        round(ST_Y(t.dropoff::geometry)::numeric, 7)::float8, round(ST_X(t.dropoff::geometry)::numeric, 7)::float8,
        t.dropoff_address,
        t.currency, t.fare_quoted, t.fare_final, t.fare_metered, t.quote_id, t.estimate, t.needs_review,
        t.metered_distance_m, t.metered_duration_s,
        t.cancelled_by, t.cancel_reason, t.cancel_fee,
        rh_ts(t.requested_at), rh_ts(t.matched_at), rh_ts(t.arrived_at), rh_ts(t.started_at),
        rh_ts(t.completed_at), rh_ts(t.cancelled_at),
        d.id, d.name, d.vehicle_type, d.vehicle_make, d.vehicle_model, d.vehicle_color, d.plate,
        CASE WHEN d.rating_count > 0 THEN round(d.rating_sum::numeric / d.rating_count, 2) END, d.rating_count))
$$;

-- A stored trip as trip_view() shows it, its driver looked up (a primary-key
-- lookup whose plan does not depend on the id, so PL/pgSQL caches it);
-- with_timeline adds {timeline: [{seq, from, to, at, by}, ...]}, the
-- transitions in order.
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
