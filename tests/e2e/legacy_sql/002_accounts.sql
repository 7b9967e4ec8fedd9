-- 002: accounts. Riders, drivers and operators each log in with an email and
-- a password (argon2id, libsodium's crypto_pwhash_str format). Emails are
-- unique per role, case-insensitively.

CREATE TABLE operators (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX operators_email_key ON operators (lower(email));

CREATE TABLE riders (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    phone         text CHECK (length(phone) BETWEEN 3 AND 32),
    password_hash text NOT NULL,
    rating_sum    bigint NOT NULL DEFAULT 0 CHECK (rating_sum >= 0),
    rating_count  integer NOT NULL DEFAULT 0 CHECK (rating_count >= 0),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX riders_email_key ON riders (lower(email));

-- status and version: the dispatcher reserves a driver with a conditional
-- update on (status, version) so that no driver is ever dispatched twice.
CREATE TABLE drivers (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    phone         text CHECK (length(phone) BETWEEN 3 AND 32),
    password_hash text NOT NULL,
    vehicle_type  text NOT NULL CHECK (vehicle_type ~ '^[a-z0-9_-]{1,31}$'),
    vehicle_make  text NOT NULL CHECK (length(vehicle_make) BETWEEN 1 AND 50),
    vehicle_model text NOT NULL CHECK (length(vehicle_model) BETWEEN 1 AND 50),
    vehicle_color text NOT NULL CHECK (length(vehicle_color) BETWEEN 1 AND 30),
    plate         text NOT NULL CHECK (length(plate) BETWEEN 1 AND 16),
    status        text NOT NULL DEFAULT 'offline'
                  CHECK (status IN ('offline', 'available', 'offered', 'en_route', 'on_trip')),
    version       bigint NOT NULL DEFAULT 0,
    rating_sum    bigint NOT NULL DEFAULT 0 CHECK (rating_sum >= 0),
    rating_count  integer NOT NULL DEFAULT 0 CHECK (rating_count >= 0),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX drivers_email_key ON drivers (lower(email));
CREATE UNIQUE INDEX drivers_plate_key ON drivers (upper(plate));

-- How accounts look in API replies (never with the password hash).
CREATE FUNCTION rider_json(r riders) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'role', 'rider', 'email', r.email, 'name', r.name, 'phone', r.phone,
        'rating', CASE WHEN r.rating_count > 0 THEN jsonb_build_object(
            'average', round(r.rating_sum::numeric / r.rating_count, 2), 'count', r.rating_count) END,
        'disabled', r.disabled,
        'created_at', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

CREATE FUNCTION driver_json(d drivers) RETURNS jsonb LANGUAGE sql STABLE AS $$
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

CREATE FUNCTION operator_json(o operators) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', o.id, 'role', 'operator', 'email', o.email, 'name', o.name, 'disabled', o.disabled,
        'created_at', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;
