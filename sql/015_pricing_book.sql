-- 015: the pricing book: the service area and named zones (PostGIS
-- polygons), versioned tariffs per vehicle type (time-of-day bands, zone
-- rules), the operator's surge overrides per zone, and the log of every
-- change with who made it.
--
-- The daemon holds the book in memory (src/pricing/book.c) and reads it
-- again whenever pricing_book.version moves: every change below bumps it
-- in the same transaction and NOTIFYs ridehail_pricing, so a change takes
-- effect without a restart in every daemon on the database. Rows of
-- tariffs are never updated: a change is a new version, and every trip
-- records the version it was priced with (trips.tariff_version, from the
-- estimate it stores), so a receipt can always be explained.
--
-- The functions that read and change the book are in
-- sql/functions/20_pricing_book.sql; what it adds to a trip's fare (zone
-- fees, fixed fares, the waiting fee) in 30_trip_fare.sql, 40_trip_apply.sql
-- and 40_trip_receipt.sql.
--


CREATE TABLE pricing_book (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL CHECK (version >= 1)
);
INSERT INTO pricing_book VALUES (true, 1);

CREATE TABLE pricing_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 64),
    action       text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    subject      text NOT NULL CHECK (length(subject) <= 64),
    detail       jsonb NOT NULL DEFAULT '{}',
    book_version bigint NOT NULL
);

-- The service area (kind service_area: a pickup outside every one of them
-- is refused; none at all: everywhere is served) and named zones (kind
-- zone: the zone of a point is the one of highest priority holding it; two
-- zones of one priority may not overlap).
CREATE TABLE zones (
    id         serial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    kind       text NOT NULL CHECK (kind IN ('service_area', 'zone')),
    priority   integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    geom       geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
CREATE INDEX zones_geom ON zones USING gist (geom);

-- One row per (vehicle type, version); the highest version is current.
-- bands: [{name, start "HH:MM", end "HH:MM", base?, per_km?, per_min?,
-- minimum?}] in pricing.timezone, the first holding the time applies;
-- zone_rules: [{kind: pickup_fee|dropoff_fee, zone, amount} |
-- {kind: fixed, from, to, amount, both_ways}] naming zones of kind zone.
CREATE TABLE tariffs (
    vehicle_type    rh_trip_vehicle NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    currency        rh_currency NOT NULL,
    base            rh_amount NOT NULL,
    per_km          rh_amount NOT NULL,
    per_min         rh_amount NOT NULL,
    minimum         rh_amount NOT NULL,
    booking_fee     rh_amount NOT NULL,
    cancel_fee      rh_amount NOT NULL,
    no_show_fee     rh_amount NOT NULL,
    waiting_free_s  rh_count NOT NULL,
    waiting_per_min rh_amount NOT NULL,
    bands           jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(bands) = 'array'),
    zone_rules      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(zone_rules) = 'array'),
    source          text NOT NULL CHECK (source IN ('config', 'operator')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_type, version)
);

CREATE TABLE surge_overrides (
    zone_id integer PRIMARY KEY REFERENCES zones (id) ON DELETE CASCADE,
    mode    text NOT NULL CHECK (mode IN ('cap', 'freeze', 'disable')),
    cap     numeric(4, 2) CHECK (cap BETWEEN 1 AND 10),
    reason  text CHECK (length(reason) <= 200),
    set_by  text NOT NULL,
    set_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((mode = 'cap') = (cap IS NOT NULL))
);

-- The tariff version a trip was priced with (its estimate carries it; a
-- trip of a quote given before this migration has none).
ALTER TABLE trips ADD COLUMN tariff_version integer
    GENERATED ALWAYS AS ((estimate->>'tariff_version')::integer) STORED;
