-- 011: the trip's API view is rendered by the daemon; the database gives
-- the row it is made of.
--
-- trip_view() built the view as nested jsonb: eight jsonb_build_object()
-- calls, the breakdown as five deletions from the estimate, each point as
-- its own object merged with its address, then jsonb_strip_nulls() over the
-- whole: 287,000 instructions per trip (callgrind, a single-user backend),
-- the largest single cost of a booking in the database, since every ride
-- request and every transition answers with the view. With the row instead
-- (bench/trip_sql_ir.sh, instructions per item, batches of 32): MATCHED
-- 1,024,000 -> 805,000, a new trip 1,124,000 -> 956,000.
--
-- trip_view(t, d) now answers {"trip_row": [...]}: the columns the view is
-- made of, in this order (the daemon's src/trip/view.c reads them by
-- position and builds the same object the old trip_view() gave):
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
-- What the old view rounded (coordinates to 7 decimals, the rating average
-- to 2) is rounded here the same way, so the values are the same to the
-- last digit. Callers are unchanged: trip_json() and the batch functions
-- merge their members ({timeline}, {driver_version}, {repeated}, ...) into
-- this object as before.

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
