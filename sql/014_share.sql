-- 014: shared rides (docs/sharing.md): several riders in one car.
--
-- A shared trip (share_trips) is one driver's car with an ordered stop
-- list; each rider's booking (share_bookings) is a leg inside it with its
-- own state, fare and history. The functions that change these rows are in
-- sql/functions/50_share.sql: one call, one transaction, with the history
-- row (share_events) and the outbox row of every change.
--
-- Constraints, not only code, hold the rules:
--   a seat is held by one booking at a time: share_seats' primary key is
--   (trip, seat number), and the number is at most the trip's seats (a
--   foreign key brings the trip's seat count into the row);
--   one open shared trip per driver, one active booking per rider (partial
--   unique indexes);
--   a booking past pending names its trip; states, modes, seats and money
--   in range.

CREATE TABLE share_trips (
    id             uuid PRIMARY KEY,
    driver_id      uuid NOT NULL REFERENCES drivers (id),
    driver_version bigint NOT NULL,               -- the reservation the trip holds (drivers.version)
    vehicle_type   text NOT NULL CHECK (length(vehicle_type) BETWEEN 1 AND 31),
    seats          smallint NOT NULL CHECK (seats BETWEEN 1 AND 60),
    state          text NOT NULL DEFAULT 'OPEN' CHECK (state IN ('OPEN', 'FINISHED')),
    stops_version  integer NOT NULL DEFAULT 1 CHECK (stops_version >= 1),
    -- the driver's ordered stop list: [{booking_id, kind: pickup|dropoff, lat, lng}]
    stops          jsonb NOT NULL CHECK (jsonb_typeof(stops) = 'array'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    CHECK ((state = 'FINISHED') = (finished_at IS NOT NULL)),
    UNIQUE (id, seats)
);
CREATE UNIQUE INDEX share_trips_one_open_per_driver ON share_trips (driver_id) WHERE state = 'OPEN';

CREATE TABLE share_bookings (
    id              uuid PRIMARY KEY,
    rider_id        uuid NOT NULL REFERENCES riders (id),
    trip_id         uuid REFERENCES share_trips (id),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'confirmed', 'arrived', 'picked_up', 'dropped_off', 'cancelled')),
    version         integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    seats           smallint NOT NULL CHECK (seats IN (1, 2)),
    mode            text NOT NULL CHECK (mode IN ('normal', 'express')),
    corp            boolean NOT NULL,
    price           bigint NOT NULL CHECK (price >= 0),   -- the shared price, minor units: what the rider pays
    solo_price      bigint NOT NULL CHECK (solo_price >= 0), -- the tariff's fare for the same trip alone
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    vehicle_type    text NOT NULL CHECK (length(vehicle_type) BETWEEN 1 AND 31),
    rate_card_id    text NOT NULL CHECK (length(rate_card_id) BETWEEN 1 AND 400),
    pickup          geography(Point, 4326) NOT NULL,
    dropoff         geography(Point, 4326) NOT NULL,
    direct_s        integer NOT NULL CHECK (direct_s >= 0),  -- the direct route, alone
    direct_m        integer NOT NULL CHECK (direct_m >= 0),
    -- trip rules: 1 cash, 2 OTP at pickup, 4 hotspot pickup point
    rules           smallint NOT NULL DEFAULT 0 CHECK (rules BETWEEN 0 AND 7),
    otp             text CHECK (otp ~ '^[0-9]{4}$'),
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    body_hash       text,
    cancel_reason   text CHECK (length(cancel_reason) <= 64),
    cancelled_by    text CHECK (cancelled_by IN ('rider', 'driver', 'operator', 'system')),
    fare_final      bigint CHECK (fare_final >= 0),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at    timestamptz,
    picked_up_at    timestamptz,
    dropped_off_at  timestamptz,
    cancelled_at    timestamptz,
    CHECK (state IN ('pending', 'cancelled') OR trip_id IS NOT NULL),
    CHECK (state <> 'pending' OR trip_id IS NULL),
    CHECK ((rules & 2 = 0) = (otp IS NULL)),
    CHECK ((state = 'dropped_off') = (fare_final IS NOT NULL)),
    CHECK ((state = 'cancelled') = (cancelled_at IS NOT NULL))
);
CREATE UNIQUE INDEX share_bookings_one_active_per_rider ON share_bookings (rider_id)
    WHERE state IN ('pending', 'confirmed', 'arrived', 'picked_up');
CREATE UNIQUE INDEX share_bookings_key ON share_bookings (rider_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX share_bookings_trip ON share_bookings (trip_id) WHERE trip_id IS NOT NULL;
CREATE INDEX share_bookings_pending ON share_bookings (requested_at) WHERE state = 'pending';

-- A seat of a shared trip, held by one booking from its confirmation to its
-- drop-off or cancellation.
CREATE TABLE share_seats (
    trip_id    uuid NOT NULL,
    trip_seats smallint NOT NULL,
    seat_no    smallint NOT NULL CHECK (seat_no >= 1 AND seat_no <= trip_seats),
    booking_id uuid NOT NULL REFERENCES share_bookings (id),
    PRIMARY KEY (trip_id, seat_no),
    FOREIGN KEY (trip_id, trip_seats) REFERENCES share_trips (id, seats)
);
CREATE INDEX share_seats_booking ON share_seats (booking_id);

-- Every change of a booking, in order: seq is the booking's version after it.
CREATE TABLE share_events (
    booking_id uuid NOT NULL REFERENCES share_bookings (id),
    seq        integer NOT NULL,
    from_state text,
    to_state   text NOT NULL,
    trip_id    uuid,
    actor_role text NOT NULL CHECK (actor_role IN ('rider', 'driver', 'operator', 'system')),
    actor_id   text,
    at         timestamptz NOT NULL DEFAULT now(),
    detail     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (booking_id, seq)
);
