-- Rating a completed trip: one rating each way (trip_ratings, sql/005_trips.sql),
-- added to the rated account's sum and count, reported as rating.submitted.

-- Returns (status, body): 201 {trip_id, by, stars}; 404 (no such trip, or
-- not the caller's); 409 {reason: not_completed | already_rated, state}.
CREATE OR REPLACE FUNCTION trip_rate(p_trip uuid, p_role text, p_actor uuid, p_stars integer, p_comment text,
                                     OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    t trips;
BEGIN
    SELECT * INTO t FROM trips WHERE id = p_trip FOR UPDATE;
    IF NOT FOUND OR (p_role = 'rider' AND t.rider_id <> p_actor)
       OR (p_role = 'driver' AND t.driver_id IS DISTINCT FROM p_actor) THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found');
        RETURN;
    END IF;
    IF t.state <> 'COMPLETED' THEN
        status := 409;
        body := jsonb_build_object('reason', 'not_completed', 'state', t.state);
        RETURN;
    END IF;
    INSERT INTO trip_ratings (trip_id, by_role, stars, comment) VALUES (t.id, p_role, p_stars, p_comment)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        status := 409;
        body := jsonb_build_object('reason', 'already_rated', 'state', t.state);
        RETURN;
    END IF;
    IF p_role = 'rider' THEN
        UPDATE drivers SET rating_sum = rating_sum + p_stars, rating_count = rating_count + 1 WHERE id = t.driver_id;
    ELSE
        UPDATE riders SET rating_sum = rating_sum + p_stars, rating_count = rating_count + 1 WHERE id = t.rider_id;
    END IF;
    PERFORM trip_emit(t, 'rating.submitted', jsonb_strip_nulls(jsonb_build_object(
        'trip_id', t.id, 'rated_by', p_role,
        'rater_id', p_actor, 'ratee_id', CASE p_role WHEN 'rider' THEN t.driver_id ELSE t.rider_id END,
        'stars', p_stars, 'comment', p_comment)));
    status := 201;
    body := jsonb_build_object('trip_id', t.id, 'by', p_role, 'stars', p_stars);
END
$$;
