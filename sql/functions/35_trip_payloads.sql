-- The payloads of a new trip's first event, which both the ride request
-- (40_trip_request.sql) and the state machine (40_trip_apply.sql: a
-- scheduled ride's trip.requested when its search starts) write; a file
-- of its own, applied before both.

-- trip.requested.
CREATE OR REPLACE FUNCTION trip_requested_payload(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'trip_id', t.id, 'passenger_id', t.rider_id,
        'pickup_location', rh_latlon(t.pickup), 'dropoff_location', rh_latlon(t.dropoff),
        'requested_at', rh_ts(t.requested_at), 'vehicle_type', t.vehicle_type,
        'fare', rh_money(t.fare_quoted, t.currency))
$$;

-- A ride for later: what trip.requested carries, and when it is for.
CREATE OR REPLACE FUNCTION trip_scheduled_payload(t trips) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT trip_requested_payload(t) || jsonb_build_object('scheduled_at', rh_ts(t.scheduled_at))
       || jsonb_strip_nulls(jsonb_build_object('booked_by', t.booked_by))
$$;

-- The first event of a new trip: requested now, or scheduled.
CREATE OR REPLACE FUNCTION trip_first_event(t trips, OUT event_type text, OUT payload jsonb)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN t.state = 'SCHEDULED' THEN 'trip.scheduled' ELSE 'trip.requested' END,
           CASE WHEN t.state = 'SCHEDULED' THEN trip_scheduled_payload(t) ELSE trip_requested_payload(t) END
$$;
