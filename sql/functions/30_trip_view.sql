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
-- columns the view is made of, in their order, as include/trip/trip_row.def
-- defines them for both sides (build-aux/embed writes them in place of
-- the placeholder below, one per line with its position and name;
-- src/trip/view.c reads them by position and builds the object the view
-- always was). One SQL expression: the planner inlines it into its
-- callers, which merge their own members into the object ({timeline},
-- {driver_version}, {repeated}, ...).
--
-- trip_row() is the row alone, for a caller that adds a member of its own to the view:
-- jsonb_build_object('trip_row', trip_row(t, d), 'driver_version', v) makes
-- the same object as trip_view(t, d) || jsonb_build_object('driver_version', v)
-- without copying the whole row a second time (the merge cost 39,000
-- instructions of a MATCHED, bench/trip_sql_ir.sh).
CREATE OR REPLACE FUNCTION trip_row(t trips, d drivers) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_array(
        @TRIP_ROW@
    )
$$;

CREATE OR REPLACE FUNCTION trip_view(t trips, d drivers) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('trip_row', trip_row(t, d))
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
