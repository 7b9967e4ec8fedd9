-- 002: accounts. Riders, drivers and operators each log in with an email and
-- a password (argon2id, libsodium's crypto_pwhash_str format). Emails are
-- unique per role, case-insensitively. How accounts look in API replies:
-- sql/functions/20_accounts.sql.
--
-- Its text up to schema version 11 also defined functions; their bodies
-- now live in sql/functions/. The schema it makes is the same, so a
-- database that recorded that text is at this migration:
-- was-checksum: 6e6f702097065a65

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
