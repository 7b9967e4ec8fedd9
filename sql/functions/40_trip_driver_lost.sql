-- A live trip whose driver is gone (no socket, no location) for
-- trip.driver_lost_after (src/match/lost.c): flagged (p_lost) or, the
-- driver back, cleared, each with an event of the trip for the operator
-- (trip.driver_lost, trip.driver_returned). 1 when that changed something,
-- 0 when the trip is not live with this driver or already so.
CREATE OR REPLACE FUNCTION trip_driver_lost(p_trip uuid, p_driver uuid, p_lost boolean) RETURNS integer
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
