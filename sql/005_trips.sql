-- 005: trips, their history, ratings, idempotency keys and the outbox.
--
-- The trip state machine that changes these rows is trip_apply()
-- (sql/functions/40_trip_apply.sql); a ride request makes a trip with
-- trip_requests() (40_trip_request.sql). Constraints, not only code, hold
-- the rules: one active trip per rider and per driver (partial unique
-- indexes), legal states (CHECK), money in integer minor units. (The rules
-- on one column became domains in sql/010_check_domains.sql.)
--
-- Its text up to schema version 11 also defined functions; their bodies
-- now live in sql/functions/. The schema it makes is the same, so a
-- database that recorded that text is at this migration:
-- was-checksum: 75f57f94a4daca8e

CREATE TABLE trips (
    id                uuid PRIMARY KEY,
    rider_id          uuid NOT NULL REFERENCES riders (id),
    driver_id         uuid REFERENCES drivers (id),
    state             text NOT NULL DEFAULT 'SEARCHING'
                      CHECK (state IN ('SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED')),
    version           integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    event_seq         integer NOT NULL DEFAULT 0 CHECK (event_seq >= 0), -- last outbox aggregate_seq
    vehicle_type      text NOT NULL CHECK (length(vehicle_type) BETWEEN 1 AND 31), -- a configured tariff
    pickup            geography(Point, 4326) NOT NULL,
    dropoff           geography(Point, 4326) NOT NULL,
    pickup_address    text CHECK (length(pickup_address) <= 200),
    dropoff_address   text CHECK (length(dropoff_address) <= 200),
    currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- the upfront price, honoured at completion (minor units)
    quote_id          text CHECK (length(quote_id) <= 400),
    fare_quoted       bigint NOT NULL CHECK (fare_quoted >= 0),
    -- estimate and tariff as quoted: {base, distance, time, surge_multiplier,
    -- minimum, booking_fee, total, per_km, per_min, distance_m, duration_s, method}
    estimate          jsonb NOT NULL,
    -- the cancellation and fare rules in force when the trip was requested
    policy            jsonb NOT NULL,
    fare_final        bigint CHECK (fare_final >= 0),
    fare_metered      bigint CHECK (fare_metered >= 0),
    metered_distance_m integer CHECK (metered_distance_m >= 0),
    metered_duration_s integer CHECK (metered_duration_s >= 0),
    needs_review      boolean NOT NULL DEFAULT false,
    cancelled_by      text CHECK (cancelled_by IN ('rider', 'driver', 'operator', 'system')),
    cancel_reason     text CHECK (length(cancel_reason) <= 64),
    cancel_fee        bigint CHECK (cancel_fee >= 0),
    end_location      geography(Point, 4326),
    requested_at      timestamptz NOT NULL DEFAULT now(),
    matched_at        timestamptz,
    arrived_at        timestamptz,
    started_at        timestamptz,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    CHECK (state IN ('SEARCHING', 'CANCELLED') OR driver_id IS NOT NULL),
    CHECK ((state = 'COMPLETED') = (completed_at IS NOT NULL)),
    CHECK ((state = 'CANCELLED') = (cancelled_at IS NOT NULL)),
    CHECK (state <> 'COMPLETED' OR fare_final IS NOT NULL)
);

-- One active trip per rider and per driver: the database refuses a second
-- one even if two requests race past every check in the code.
CREATE UNIQUE INDEX trips_one_active_per_rider ON trips (rider_id)
    WHERE state IN ('SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS');
CREATE UNIQUE INDEX trips_one_active_per_driver ON trips (driver_id)
    WHERE state IN ('MATCHED', 'ARRIVED', 'IN_PROGRESS');
CREATE INDEX trips_rider_recent ON trips (rider_id, requested_at DESC, id DESC);
CREATE INDEX trips_driver_recent ON trips (driver_id, requested_at DESC, id DESC) WHERE driver_id IS NOT NULL;
CREATE INDEX trips_recent ON trips (requested_at DESC, id DESC);
CREATE INDEX trips_searching ON trips (requested_at) WHERE state = 'SEARCHING';

-- Every transition, in order: seq is the trip's version after it.
CREATE TABLE trip_events (
    trip_id    uuid NOT NULL REFERENCES trips (id),
    seq        integer NOT NULL,
    from_state text,
    to_state   text NOT NULL,
    actor_role text NOT NULL CHECK (actor_role IN ('rider', 'driver', 'operator', 'system')),
    actor_id   text,
    at         timestamptz NOT NULL DEFAULT now(),
    detail     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (trip_id, seq)
);

CREATE TABLE trip_ratings (
    trip_id    uuid NOT NULL REFERENCES trips (id),
    by_role    text NOT NULL CHECK (by_role IN ('rider', 'driver')),
    stars      smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
    comment    text CHECK (length(comment) <= 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trip_id, by_role)
);

-- POST /v1/rides with an Idempotency-Key: the first answer is kept and given
-- again for the same key and body.
CREATE TABLE ride_idempotency (
    rider_id   uuid NOT NULL REFERENCES riders (id),
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    body_hash  text NOT NULL,
    trip_id    uuid NOT NULL REFERENCES trips (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rider_id, key)
);

-- Events in the envelope of the event schemas, written in the same
-- transaction as the state they report; a relay publishes them in id order
-- and stamps published_at. (aggregate_id, aggregate_seq) orders one trip's
-- events without gaps.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type     text NOT NULL CHECK (event_type ~ '^[a-z]+(\.[a-z_]+)+$'),
    event_version  integer NOT NULL DEFAULT 1 CHECK (event_version >= 1),
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    producer       text NOT NULL,
    correlation_id uuid NOT NULL,
    aggregate_id   uuid NOT NULL,
    aggregate_seq  integer NOT NULL,
    payload        jsonb NOT NULL,
    published_at   timestamptz,
    UNIQUE (aggregate_id, aggregate_seq)
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
