-- How accounts look in API replies (never with the password hash): the
-- daemon's src/auth reads them straight from these (RETURNING rider_json(riders),
-- SELECT driver_json(d) ...). Tables: sql/002_accounts.sql.

CREATE OR REPLACE FUNCTION rider_json(r riders) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'role', 'rider', 'email', r.email, 'name', r.name, 'phone', r.phone,
        'rating', CASE WHEN r.rating_count > 0 THEN jsonb_build_object(
            'average', round(r.rating_sum::numeric / r.rating_count, 2), 'count', r.rating_count) END,
        'disabled', r.disabled,
        'created_at', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

CREATE OR REPLACE FUNCTION driver_json(d drivers) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', d.id, 'role', 'driver', 'email', d.email, 'name', d.name, 'phone', d.phone,
        'vehicle', jsonb_build_object('type', d.vehicle_type, 'make', d.vehicle_make,
                                      'model', d.vehicle_model, 'color', d.vehicle_color, 'plate', d.plate),
        'status', d.status, 'version', d.version,
        'rating', CASE WHEN d.rating_count > 0 THEN jsonb_build_object(
            'average', round(d.rating_sum::numeric / d.rating_count, 2), 'count', d.rating_count) END,
        'disabled', d.disabled,
        'created_at', to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

CREATE OR REPLACE FUNCTION operator_json(o operators) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', o.id, 'role', 'operator', 'email', o.email, 'name', o.name, 'disabled', o.disabled,
        'created_at', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;
