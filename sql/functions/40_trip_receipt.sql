-- The receipt of a completed trip, or of a cancellation that was charged
-- (GET /v1/rides/{id}/receipt, src/trip/trip.c): the fare as charged and,
-- when the metered fare was charged instead of the upfront one, its lines
-- from the tariff as quoted (30_trip_fare.sql).
CREATE OR REPLACE FUNCTION trip_receipt(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
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
