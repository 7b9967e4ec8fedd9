-- 018: scheduled rides and bookings that wait for drivers (issue 25). The
-- functions are in sql/functions/ (40_trip_request.sql makes a scheduled
-- trip, 40_trip_apply.sql has its edges).
--
-- A ride requested for later (scheduled_at) is a trip in state SCHEDULED:
-- no driver, nothing searched. The daemon moves it to SEARCHING
-- match.schedule_lead before scheduled_at (search_started_at: when; for a
-- ride requested for now it stays NULL, its search starts at requested_at),
-- and until then its rider or an operator may cancel it free of charge.
-- A SCHEDULED trip counts as the rider's active trip: one open booking per
-- rider, scheduled or live.
--
-- booked_by: the operator who booked the trip for its rider (a dispatcher's
-- phone booking), NULL when the rider asked; such a trip waits
-- match.booking_max_wait for a driver instead of match.max_search, also
-- across a restart.

ALTER TABLE trips ADD COLUMN scheduled_at timestamptz,
                  ADD COLUMN search_started_at timestamptz,
                  ADD COLUMN booked_by text CHECK (length(booked_by) <= 64);

-- The state CHECK, and the one that says which states have no driver
-- (unnamed in 005: these are the names PostgreSQL gave them there).
ALTER TABLE trips
    DROP CONSTRAINT trips_state_check,
    DROP CONSTRAINT trips_check,
    ADD CONSTRAINT trips_state_check
        CHECK (state IN ('SCHEDULED', 'SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED')),
    ADD CONSTRAINT trips_driverless_check
        CHECK (state IN ('SCHEDULED', 'SEARCHING', 'CANCELLED') OR driver_id IS NOT NULL),
    ADD CONSTRAINT trips_scheduled_check CHECK (state <> 'SCHEDULED' OR scheduled_at IS NOT NULL);

-- One open trip per rider, a scheduled one included (the queries that ask
-- for a rider's active trip name the same states, so the index serves them).
DROP INDEX trips_one_active_per_rider;
CREATE UNIQUE INDEX trips_one_active_per_rider ON trips (rider_id)
    WHERE state IN ('SCHEDULED', 'SEARCHING', 'MATCHED', 'ARRIVED', 'IN_PROGRESS');
-- What the daemon reads back at start, soonest first.
CREATE INDEX trips_scheduled ON trips (scheduled_at) WHERE state = 'SCHEDULED';

-- trip_request() takes the time and the booking operator now (the old
-- signature would stay beside the new one).
DROP FUNCTION IF EXISTS trip_request(uuid, text, text, text, double precision, double precision,
                                     double precision, double precision, text, text, text, text, jsonb, jsonb);
