-- The metered fare from the tariff a trip was quoted with (trips.estimate:
-- {base, per_km, per_min, surge_multiplier, minimum, booking_fee, and from
-- the pricing book zone_fee, fixed_fare ...}): integer arithmetic in minor
-- units, rounding halves up, exactly as book_price() in
-- src/pricing/book.c (and pricing_fare() in src/pricing/pricing.c for the
-- configuration's tariffs), so a trip metered as estimated costs the
-- quote. The state machine charges it (40_trip_apply.sql), the receipt
-- itemises it (40_trip_receipt.sql).

CREATE OR REPLACE FUNCTION trip_fare_distance(est jsonb, dist_m integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT ((est->>'per_km')::bigint * dist_m + 500) / 1000
$$;

CREATE OR REPLACE FUNCTION trip_fare_time(est jsonb, dur_s integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT ((est->>'per_min')::bigint * dur_s + 30) / 60
$$;

-- The estimate's zone fees (airport pickup or dropoff, not surged) are
-- added; a fixed fare between zones replaces base, distance, time, surge
-- and the minimum. (An estimate from before the pricing book has neither.)
CREATE OR REPLACE FUNCTION trip_metered_fare(est jsonb, dist_m integer, dur_s integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN (est->>'fixed_fare')::bigint > 0 THEN (est->>'fixed_fare')::bigint
                ELSE GREATEST((((est->>'base')::bigint + trip_fare_distance(est, dist_m) + trip_fare_time(est, dur_s))
                               * round((est->>'surge_multiplier')::numeric * 1000)::bigint + 500) / 1000,
                              (est->>'minimum')::bigint) END
           + (est->>'booking_fee')::bigint + COALESCE((est->>'zone_fee')::bigint, 0)
$$;

-- The waiting fee: per started minute the driver waited at the pickup
-- (arrived -> started) past the tariff's free time, as the trip's policy
-- recorded it when it was requested (none in a policy without it). On top
-- of the fare charged, metered or upfront (40_trip_apply.sql), and a line
-- of the receipt.
CREATE OR REPLACE FUNCTION trip_waiting_fee(pol jsonb, arrived timestamptz, started timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN arrived IS NULL OR started IS NULL OR NOT pol ? 'waiting_per_min' THEN 0::bigint
                ELSE GREATEST(0, ceil((extract(epoch FROM started - arrived) - (pol->>'waiting_free_s')::numeric) / 60))::bigint
                     * (pol->>'waiting_per_min')::bigint END
$$;

-- The part of a trip in progress that was driven, from the driver's
-- location history since the start: the length of their fixes, and the time
-- from the start to the last fix (0 and 0 without two fixes). The fare of a
-- trip ended because its driver is gone (trip_step_cancelled()).
CREATE OR REPLACE FUNCTION trip_driven(t trips, OUT dist_m integer, OUT dur_s integer) LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) >= 2
                THEN round(ST_Length(ST_MakeLine(l.location::geometry ORDER BY l.recorded_at)::geography))::integer
                ELSE 0 END,
           CASE WHEN count(*) >= 1
                THEN GREATEST(round(extract(epoch FROM max(l.recorded_at) - t.started_at)), 0)::integer
                ELSE 0 END
      FROM driver_locations l
     WHERE l.trip_id = t.id AND l.recorded_at >= t.started_at
$$;
