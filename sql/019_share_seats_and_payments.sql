-- 019: shared rides (issue 27): a confirmed booking holds its seats by
-- constraint; a shared rider's fare is a payment like a solo trip's.
--
-- 014 made a seat held by one booking at most (share_seats' primary key,
-- seat number within the car). It did not make a booking past pending hold
-- any: a confirmation that took fewer seats than it booked (or none) still
-- committed, so a car could carry more riders than seats. Now the booking
-- names its seats (seat_no, and seat_no2 for a second seat), each a row of
-- share_seats held by it (foreign keys): a confirmed, arrived or picked-up
-- booking without every seat it booked cannot be written, whatever a
-- function does.
--
-- The seats go when the booking ends: the booking lets go of them first
-- (seat_no NULL with its new state), then the rows are deleted.
ALTER TABLE share_bookings ADD COLUMN seat_no smallint CHECK (seat_no >= 1);
ALTER TABLE share_bookings ADD COLUMN seat_no2 smallint CHECK (seat_no2 >= 1 AND seat_no2 <> seat_no);

UPDATE share_bookings b
   SET seat_no = (SELECT min(s.seat_no) FROM share_seats s WHERE s.booking_id = b.id),
       seat_no2 = CASE WHEN b.seats = 2 THEN (SELECT max(s.seat_no) FROM share_seats s WHERE s.booking_id = b.id) END
 WHERE b.state IN ('confirmed', 'arrived', 'picked_up');

ALTER TABLE share_seats ADD CONSTRAINT share_seats_holder UNIQUE (trip_id, seat_no, booking_id);
ALTER TABLE share_bookings
    ADD CONSTRAINT share_bookings_holds_seats
        CHECK ((state IN ('confirmed', 'arrived', 'picked_up')) = (seat_no IS NOT NULL)
               AND (seat_no2 IS NOT NULL) = (seat_no IS NOT NULL AND seats = 2)),
    ADD CONSTRAINT share_bookings_seat FOREIGN KEY (trip_id, seat_no, id)
        REFERENCES share_seats (trip_id, seat_no, booking_id),
    ADD CONSTRAINT share_bookings_seat2 FOREIGN KEY (trip_id, seat_no2, id)
        REFERENCES share_seats (trip_id, seat_no, booking_id);

-- share_take_seats() answered only whether it took every seat, and was
-- called without looking; share_seats_take() (sql/functions/50_share.sql)
-- answers the seats it took.
DROP FUNCTION IF EXISTS share_take_seats(share_trips, uuid, integer);

-- A shared rider's fare is requested like a solo trip's (payment.requested
-- when they are dropped off, a failed payment holds the rider): a payment is
-- for a trip or for a shared booking, never both; paid_for is whichever it
-- is, and what POST /v1/payments/{trip_id}/result and the holds name.
ALTER TABLE payments ALTER COLUMN trip_id DROP NOT NULL;
ALTER TABLE payments ADD COLUMN share_booking_id uuid UNIQUE REFERENCES share_bookings (id);
ALTER TABLE payments ADD CONSTRAINT payments_one_payee CHECK (num_nonnulls(trip_id, share_booking_id) = 1);
ALTER TABLE payments ADD COLUMN paid_for uuid GENERATED ALWAYS AS (coalesce(trip_id, share_booking_id)) STORED;
CREATE UNIQUE INDEX payments_paid_for ON payments (paid_for);

-- The pickup and dropoff as the API shows them (degrees, 7 decimals), kept
-- beside the geography: every answer shows the booking, and reading them
-- back out of the geography (a cast and two PostGIS calls each) was half
-- the cost of rendering it.
ALTER TABLE share_bookings ADD COLUMN plat float8, ADD COLUMN plng float8, ADD COLUMN dlat float8, ADD COLUMN dlng float8;
UPDATE share_bookings SET plat = round(ST_Y(pickup::geometry)::numeric, 7)::float8,
                          plng = round(ST_X(pickup::geometry)::numeric, 7)::float8,
                          dlat = round(ST_Y(dropoff::geometry)::numeric, 7)::float8,
                          dlng = round(ST_X(dropoff::geometry)::numeric, 7)::float8;
ALTER TABLE share_bookings ALTER COLUMN plat SET NOT NULL, ALTER COLUMN plng SET NOT NULL,
                           ALTER COLUMN dlat SET NOT NULL, ALTER COLUMN dlng SET NOT NULL;
