-- The metered fare from the tariff a trip was quoted with (trips.estimate:
-- {base, per_km, per_min, surge_multiplier, minimum, booking_fee, ...}):
-- integer arithmetic in minor units, rounding halves up, exactly as
-- pricing_fare() in src/pricing/pricing.c, so a trip metered as estimated
-- costs the quote. The state machine charges it (40_trip_apply.sql), the
-- receipt itemises it (40_trip_receipt.sql).

CREATE OR REPLACE FUNCTION trip_fare_distance(est jsonb, dist_m integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT ((est->>'per_km')::bigint * dist_m + 500) / 1000
$$;

CREATE OR REPLACE FUNCTION trip_fare_time(est jsonb, dur_s integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT ((est->>'per_min')::bigint * dur_s + 30) / 60
$$;

CREATE OR REPLACE FUNCTION trip_metered_fare(est jsonb, dist_m integer, dur_s integer) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT GREATEST((((est->>'base')::bigint + trip_fare_distance(est, dist_m) + trip_fare_time(est, dur_s))
                     * round((est->>'surge_multiplier')::numeric * 1000)::bigint + 500) / 1000,
                    (est->>'minimum')::bigint) + (est->>'booking_fee')::bigint
$$;
