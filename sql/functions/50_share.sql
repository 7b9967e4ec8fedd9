-- Shared rides (tables: sql/014_share.sql; docs/sharing.md). Each function
-- is one transaction: the booking's row, its history row (share_events)
-- and its outbox row change together or not at all. Each answers a jsonb
-- {status, ...}: 200/202 done, 409 refused (reason names why), 404 unknown,
-- 422 an idempotency key reused for another request.

-- A booking as the API shows it (GET /v1/share/bookings/{id}).
-- (PL/pgSQL, not SQL: a SQL function whose body cannot be inlined is parsed
-- and planned again at every call from another function, which made this
-- one the most of a booking's cost; PL/pgSQL keeps its plan.)
CREATE OR REPLACE FUNCTION share_booking_view(b share_bookings) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'id', b.id,
        'rider_id', b.rider_id,
        'state', b.state,
        'version', b.version,
        'trip_id', b.trip_id,
        'seats', b.seats,
        'mode', b.mode,
        'corporate', b.corp,
        'price', b.price,
        'currency', b.currency,
        'vehicle_type', b.vehicle_type,
        'pickup', jsonb_build_object('lat', b.plat, 'lng', b.plng),
        'dropoff', jsonb_build_object('lat', b.dlat, 'lng', b.dlng),
        'rules', (SELECT coalesce(jsonb_agg(r.name ORDER BY r.bit), '[]'::jsonb)
                  FROM (VALUES (1, 'cash'), (2, 'otp'), (4, 'hotspot')) r (bit, name) WHERE b.rules & r.bit <> 0),
        'otp', b.otp,
        'requested_at', rh_ts(b.requested_at),
        'confirmed_at', rh_ts(b.confirmed_at),
        'picked_up_at', rh_ts(b.picked_up_at),
        'dropped_off_at', rh_ts(b.dropped_off_at),
        'cancelled_at', rh_ts(b.cancelled_at),
        'cancel_reason', b.cancel_reason,
        'fare_final', b.fare_final,
        'driver', (SELECT jsonb_build_object('id', d.id, 'name', d.name, 'plate', d.plate,
                                             'vehicle', d.vehicle_make || ' ' || d.vehicle_model)
                   FROM share_trips t JOIN drivers d ON d.id = t.driver_id WHERE t.id = b.trip_id)));
END
$$;

-- What the planner needs of an active booking (src/share/): the view and
-- its times in unix milliseconds.
CREATE OR REPLACE FUNCTION share_booking_plan(b share_bookings) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN share_booking_view(b) || jsonb_build_object(
        'direct_s', b.direct_s, 'direct_m', b.direct_m, 'solo_price', b.solo_price,
        'requested_ms', floor(extract(epoch FROM b.requested_at) * 1000)::bigint,
        'picked_up_ms', floor(extract(epoch FROM b.picked_up_at) * 1000)::bigint);
END
$$;

-- The history row and the outbox row of a booking's change (b is the row
-- after it: its version is the event's sequence number).
CREATE OR REPLACE FUNCTION share_emit(b share_bookings, from_state text, etype text, role text, actor text,
                                      detail jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO share_events (booking_id, seq, from_state, to_state, trip_id, actor_role, actor_id, detail)
    VALUES (b.id, b.version, from_state, b.state, b.trip_id, role, actor, detail);
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES (etype, 'ridehaild', b.id, b.id, b.version,
            CASE WHEN etype = 'share.booking.requested' THEN
                jsonb_build_object('booking_id', b.id, 'rider_id', b.rider_id,
                                   'pickup', jsonb_build_object('lat', b.plat, 'lon', b.plng),
                                   'dropoff', jsonb_build_object('lat', b.dlat, 'lon', b.dlng),
                                   'seats', b.seats, 'mode', b.mode, 'corporate', b.corp,
                                   'price', b.price, 'currency', b.currency, 'vehicle_type', b.vehicle_type,
                                   'requested_at', rh_ts(b.requested_at))
            ELSE jsonb_strip_nulls(jsonb_build_object(
                                   'booking_id', b.id, 'rider_id', b.rider_id, 'trip_id', b.trip_id,
                                   'from_state', from_state, 'to_state', b.state, 'version', b.version,
                                   'reason', detail->>'reason', 'fare_final', b.fare_final,
                                   'currency', b.currency,
                                   'driver_id', (SELECT t.driver_id FROM share_trips t WHERE t.id = b.trip_id)))
            END);
END
$$;

-- POST /v1/share/bookings: p = {id (made by the daemon; else one is
-- drawn), rider, key, hash, card, seats, mode, corp, price, solo_price,
-- cur, vehicle, plat, plng, dlat, dlng, direct_s, direct_m, rules, otp, and
-- confirm or cancel when the daemon decided the booking before asking}.
-- 202 a new pending booking (with decided: the decision's own answer, when
-- one was asked); 200 the booking this key made before (same hash); 422
-- the key with another request; 409 the rider has an active booking.
CREATE OR REPLACE FUNCTION share_book(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b share_bookings;
    rider uuid := (p->>'rider')::uuid;
BEGIN
    IF p->>'key' IS NOT NULL THEN
        SELECT * INTO b FROM share_bookings WHERE rider_id = rider AND idempotency_key = p->>'key';
        IF FOUND THEN
            IF b.body_hash IS DISTINCT FROM p->>'hash' THEN
                RETURN jsonb_build_object('status', 422);
            END IF;
            RETURN jsonb_build_object('status', 200, 'booking', share_booking_plan(b));
        END IF;
    END IF;
    -- (two daemons booking for one rider at once: the unique index refuses
    -- the second, whose batch then runs again item by item)
    SELECT * INTO b FROM share_bookings
     WHERE rider_id = rider AND state IN ('pending', 'confirmed', 'arrived', 'picked_up');
    IF FOUND THEN
        RETURN jsonb_build_object('status', 409, 'active_booking_id', b.id);
    END IF;
    INSERT INTO share_bookings (id, rider_id, seats, mode, corp, price, solo_price, currency, vehicle_type,
                                rate_card_id, pickup, dropoff, plat, plng, dlat, dlng, direct_s, direct_m, rules,
                                otp, idempotency_key, body_hash)
    VALUES (coalesce((p->>'id')::uuid, gen_random_uuid()), rider, (p->>'seats')::smallint, p->>'mode', (p->>'corp')::boolean,
            (p->>'price')::bigint, (p->>'solo_price')::bigint, p->>'cur', p->>'vehicle', p->>'card',
            ST_SetSRID(ST_MakePoint((p->>'plng')::float8, (p->>'plat')::float8), 4326)::geography,
            ST_SetSRID(ST_MakePoint((p->>'dlng')::float8, (p->>'dlat')::float8), 4326)::geography,
            round((p->>'plat')::numeric, 7)::float8, round((p->>'plng')::numeric, 7)::float8,
            round((p->>'dlat')::numeric, 7)::float8, round((p->>'dlng')::numeric, 7)::float8,
            (p->>'direct_s')::integer, (p->>'direct_m')::integer, (p->>'rules')::smallint, p->>'otp',
            p->>'key', p->>'hash')
    RETURNING * INTO b;
    PERFORM share_emit(b, NULL, 'share.booking.requested', 'rider', rider::text, '{}');
    -- decided at once, in this transaction (the daemon knew before asking):
    -- into an open trip (p.confirm: share_confirm()'s {trip, stops_version,
    -- stops}), or cancelled (p.cancel: the reason, e.g. no_driver)
    IF p ? 'confirm' THEN
        RETURN jsonb_build_object('status', 202, 'booking', share_booking_plan(b),
                                  'decided', share_confirm(p->'confirm' || jsonb_build_object('booking', b.id)));
    ELSIF p ? 'cancel' THEN
        RETURN jsonb_build_object('status', 202, 'booking', share_booking_plan(b),
                                  'decided', share_cancel(jsonb_build_object('booking', b.id, 'role', 'system',
                                                                             'reason', p->>'cancel')));
    END IF;
    RETURN jsonb_build_object('status', 202, 'booking', share_booking_plan(b));
END
$$;

-- Takes n free seats of trip t for booking bid, the lowest numbers first,
-- and answers their numbers (fewer than n: not enough were free; the caller
-- gives back what it got). The caller holds the trip's row lock, which
-- orders every taker of the trip's seats; and should anything take a seat
-- meanwhile all the same, the primary key refuses the second holder.
CREATE OR REPLACE FUNCTION share_seats_take(t share_trips, bid uuid, n integer) RETURNS smallint[]
LANGUAGE plpgsql AS $$
DECLARE
    got smallint[];
BEGIN
    WITH taken AS (
        INSERT INTO share_seats (trip_id, trip_seats, seat_no, booking_id)
        SELECT t.id, t.seats, s, bid
          FROM generate_series(1, t.seats) s
         WHERE NOT EXISTS (SELECT 1 FROM share_seats x WHERE x.trip_id = t.id AND x.seat_no = s)
         ORDER BY s LIMIT n
        RETURNING seat_no)
    SELECT coalesce(array_agg(seat_no ORDER BY seat_no), '{}') INTO got FROM taken;
    RETURN got;
END
$$;

-- Closes trip tid when no booking in it is active any more; true if it did.
CREATE OR REPLACE FUNCTION share_trip_close_if_done(tid uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF tid IS NULL OR EXISTS (SELECT 1 FROM share_bookings WHERE trip_id = tid
                               AND state IN ('confirmed', 'arrived', 'picked_up')) THEN
        RETURN false;
    END IF;
    UPDATE share_trips SET state = 'FINISHED', finished_at = now(), stops = '[]'
     WHERE id = tid AND state = 'OPEN';
    RETURN FOUND;
END
$$;

-- A pending booking confirmed into a shared trip: p = {booking, trip,
-- stops, stops_version} into an open trip whose stop list is still at
-- stops_version, or p = {booking, trip, stops, new: true, driver,
-- driver_version, seats, vehicle} for a new trip with a driver the daemon
-- has reserved (drivers.status 'offered' at driver_version). Refusals
-- (409, reason): booking_state (no longer pending), stops_version (the
-- trip moved on), trip_closed, seats (none left), driver (not reserved at
-- that version).
CREATE OR REPLACE FUNCTION share_confirm(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b share_bookings;
    t share_trips;
    from_state text;
    tid uuid := (p->>'trip')::uuid;
    seat smallint[];
BEGIN
    SELECT * INTO b FROM share_bookings WHERE id = (p->>'booking')::uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 404);
    END IF;
    IF b.state <> 'pending' THEN
        RETURN jsonb_build_object('status', 409, 'reason', 'booking_state', 'booking', share_booking_plan(b));
    END IF;
    IF coalesce((p->>'new')::boolean, false) THEN
        IF b.seats > (p->>'seats')::integer THEN
            RETURN jsonb_build_object('status', 409, 'reason', 'seats');
        END IF;
        PERFORM 1 FROM drivers WHERE id = (p->>'driver')::uuid AND status = 'offered'
                                 AND version = (p->>'driver_version')::bigint FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 409, 'reason', 'driver');
        END IF;
        INSERT INTO share_trips (id, driver_id, driver_version, vehicle_type, seats, stops)
        VALUES (tid, (p->>'driver')::uuid, (p->>'driver_version')::bigint, p->>'vehicle',
                (p->>'seats')::smallint, p->'stops')
        RETURNING * INTO t;
        seat := share_seats_take(t, b.id, b.seats);
    ELSE
        -- the trip's row lock orders every booking confirmed into it
        SELECT * INTO t FROM share_trips WHERE id = tid FOR UPDATE;
        IF NOT FOUND OR t.state <> 'OPEN' THEN
            RETURN jsonb_build_object('status', 409, 'reason', 'trip_closed');
        END IF;
        IF t.stops_version <> (p->>'stops_version')::integer THEN
            RETURN jsonb_build_object('status', 409, 'reason', 'stops_version', 'stops_version', t.stops_version);
        END IF;
        seat := share_seats_take(t, b.id, b.seats);
        IF cardinality(seat) < b.seats THEN
            DELETE FROM share_seats WHERE booking_id = b.id;
            RETURN jsonb_build_object('status', 409, 'reason', 'seats');
        END IF;
        UPDATE share_trips SET stops = p->'stops', stops_version = stops_version + 1 WHERE id = tid
        RETURNING * INTO t;
    END IF;
    -- (the booking names the seats it holds: share_bookings_seat/seat2
    -- refuse a confirmation without every seat booked)
    from_state := b.state;
    UPDATE share_bookings SET state = 'confirmed', trip_id = t.id, version = version + 1, confirmed_at = now(),
                              seat_no = seat[1], seat_no2 = seat[2]
     WHERE id = b.id RETURNING * INTO b;
    PERFORM share_emit(b, from_state, 'share.booking.changed', 'system', NULL,
                       jsonb_build_object('stops_version', t.stops_version));
    RETURN jsonb_build_object('status', 200, 'booking', share_booking_plan(b),
                              'trip', jsonb_build_object('id', t.id, 'stops_version', t.stops_version));
END
$$;

-- A booking cancelled: p = {booking, role, actor, reason, rider (the
-- rider's own cancel: must be theirs), stops, stops_version (the trip's new
-- list without the rider's stops, when confirmed)}. 409 booking_state once
-- picked up or over, stops_version when the trip moved on. Seats are freed;
-- a trip left with no active booking is finished (trip_finished: the
-- daemon frees its driver).
CREATE OR REPLACE FUNCTION share_cancel(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b share_bookings;
    t share_trips;
    from_state text;
    finished boolean := false;
BEGIN
    -- the trip's row first, as share_leg() locks them (trip, then booking):
    -- a rider's cancel and their driver's command at once must not deadlock
    PERFORM 1 FROM share_trips WHERE id = (SELECT trip_id FROM share_bookings WHERE id = (p->>'booking')::uuid)
        FOR UPDATE;
    SELECT * INTO b FROM share_bookings WHERE id = (p->>'booking')::uuid FOR UPDATE;
    IF NOT FOUND OR (p->>'rider' IS NOT NULL AND b.rider_id <> (p->>'rider')::uuid) THEN
        RETURN jsonb_build_object('status', 404);
    END IF;
    IF b.state NOT IN ('pending', 'confirmed', 'arrived') THEN
        RETURN jsonb_build_object('status', 409, 'reason', 'booking_state', 'booking', share_booking_plan(b));
    END IF;
    IF b.trip_id IS NOT NULL AND p ? 'stops' THEN
        UPDATE share_trips SET stops = p->'stops', stops_version = stops_version + 1
         WHERE id = b.trip_id AND stops_version = (p->>'stops_version')::integer
        RETURNING * INTO t;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 409, 'reason', 'stops_version');
        END IF;
    END IF;
    from_state := b.state;
    UPDATE share_bookings SET state = 'cancelled', version = version + 1, cancelled_at = now(),
                              cancel_reason = left(p->>'reason', 64), cancelled_by = p->>'role',
                              seat_no = NULL, seat_no2 = NULL
     WHERE id = b.id RETURNING * INTO b;
    DELETE FROM share_seats WHERE booking_id = b.id;
    PERFORM share_emit(b, from_state, 'share.booking.changed', p->>'role', p->>'actor',
                       jsonb_build_object('reason', p->>'reason'));
    finished := share_trip_close_if_done(b.trip_id);
    RETURN jsonb_build_object('status', 200, 'booking', share_booking_plan(b), 'trip_finished', finished,
                              'stops_version', t.stops_version);
END
$$;

-- A dropped-off rider's fare, asked of the payment provider as a solo
-- trip's is (sql/functions/20_payments.sql): the payment (for the booking)
-- and its payment.requested, after the booking's own event; none when the
-- rider paid cash (the cash rule) or owes nothing.
CREATE OR REPLACE FUNCTION share_payment_request(b share_bookings) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p payments;
BEGIN
    IF b.rules & 1 <> 0 OR coalesce(b.fare_final, 0) <= 0 THEN
        RETURN;
    END IF;
    INSERT INTO payments (share_booking_id, rider_id, kind, idempotency_key, amount, currency)
    VALUES (b.id, b.rider_id, 'fare', 'pay_' || replace(b.id::text, '-', ''), b.fare_final, b.currency)
    ON CONFLICT (share_booking_id) DO NOTHING
    RETURNING * INTO p;
    IF p.id IS NOT NULL THEN
        PERFORM payment_requested_emit(p);
    END IF;
END
$$;

-- A driver's command for one rider of their shared trip: p = {trip, driver,
-- booking, action: arrived | picked_up | dropped_off, stops_version (the
-- list the driver acts on), stops (the list after this stop), otp,
-- cash_collected}.
-- Refusals: 404 trip (not this driver's open trip), 409 reason rider_not_on_trip,
-- stops_version (with the current one), booking_state, otp, cash (a cash
-- rider dropped off without cash_collected).
CREATE OR REPLACE FUNCTION share_leg(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b share_bookings;
    t share_trips;
    from_state text;
    act text := p->>'action';
    finished boolean;
BEGIN
    SELECT * INTO t FROM share_trips WHERE id = (p->>'trip')::uuid FOR UPDATE;
    IF NOT FOUND OR t.driver_id <> (p->>'driver')::uuid OR t.state <> 'OPEN' THEN
        RETURN jsonb_build_object('status', 404, 'reason', 'trip');
    END IF;
    SELECT * INTO b FROM share_bookings WHERE id = (p->>'booking')::uuid FOR UPDATE;
    IF NOT FOUND OR b.trip_id IS DISTINCT FROM t.id THEN
        RETURN jsonb_build_object('status', 409, 'reason', 'rider_not_on_trip');
    END IF;
    IF t.stops_version <> (p->>'stops_version')::integer THEN
        RETURN jsonb_build_object('status', 409, 'reason', 'stops_version', 'stops_version', t.stops_version);
    END IF;
    IF NOT ((act = 'arrived' AND b.state = 'confirmed')
         OR (act = 'picked_up' AND b.state IN ('confirmed', 'arrived'))
         OR (act = 'dropped_off' AND b.state = 'picked_up')) THEN
        RETURN jsonb_build_object('status', 409, 'reason', 'booking_state', 'state', b.state);
    END IF;
    IF act = 'picked_up' AND b.otp IS NOT NULL AND b.otp IS DISTINCT FROM p->>'otp' THEN
        RETURN jsonb_build_object('status', 409, 'reason', 'otp', 'state', b.state);
    END IF;
    -- the cash rule: the rider pays the driver, who says so at the drop-off
    -- (and no card payment is asked for)
    IF act = 'dropped_off' AND b.rules & 1 <> 0 AND NOT coalesce((p->>'cash_collected')::boolean, false) THEN
        RETURN jsonb_build_object('status', 409, 'reason', 'cash', 'state', b.state);
    END IF;
    IF act <> 'arrived' THEN
        UPDATE share_trips SET stops = p->'stops', stops_version = stops_version + 1 WHERE id = t.id
        RETURNING * INTO t;
    END IF;
    from_state := b.state;
    UPDATE share_bookings SET state = act, version = version + 1,
                              picked_up_at = CASE WHEN act = 'picked_up' THEN now() ELSE picked_up_at END,
                              dropped_off_at = CASE WHEN act = 'dropped_off' THEN now() ELSE dropped_off_at END,
                              fare_final = CASE WHEN act = 'dropped_off' THEN price ELSE fare_final END,
                              seat_no = CASE WHEN act = 'dropped_off' THEN NULL ELSE seat_no END,
                              seat_no2 = CASE WHEN act = 'dropped_off' THEN NULL ELSE seat_no2 END
     WHERE id = b.id RETURNING * INTO b;
    IF act = 'dropped_off' THEN
        DELETE FROM share_seats WHERE booking_id = b.id;
    END IF;
    PERFORM share_emit(b, from_state, 'share.booking.changed', 'driver', t.driver_id::text,
                       jsonb_build_object('stops_version', t.stops_version));
    IF act = 'dropped_off' THEN
        PERFORM share_payment_request(b);
    END IF;
    finished := share_trip_close_if_done(t.id);
    RETURN jsonb_build_object('status', 200, 'booking', share_booking_plan(b), 'trip_finished', finished,
                              'stops_version', t.stops_version);
END
$$;

-- The receipt of a dropped-off booking: the shared price it paid, said as
-- such, beside what the trip alone would have cost.
CREATE OR REPLACE FUNCTION share_receipt(b share_bookings) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'booking_id', b.id, 'trip_id', b.trip_id, 'rider_id', b.rider_id, 'state', b.state,
        'currency', b.currency, 'shared', true, 'seats', b.seats, 'mode', b.mode, 'corporate', b.corp,
        'pickup', jsonb_build_object('lat', b.plat, 'lng', b.plng),
        'dropoff', jsonb_build_object('lat', b.dlat, 'lng', b.dlng),
        'picked_up_at', rh_ts(b.picked_up_at), 'dropped_off_at', rh_ts(b.dropped_off_at),
        'lines', jsonb_build_array(jsonb_build_object('item', 'shared_fare', 'amount', b.fare_final)),
        'solo_fare', b.solo_price, 'saved', greatest(b.solo_price - b.fare_final, 0),
        'total', b.fare_final, 'payment', CASE WHEN b.rules & 1 <> 0 THEN 'cash' ELSE 'card' END)
$$;

-- At start (src/share/): every open trip with its active bookings, and the
-- pending bookings, to carry on.
CREATE OR REPLACE FUNCTION share_active() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'trips', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'id', t.id, 'driver_id', t.driver_id, 'driver_version', t.driver_version,
                      'vehicle_type', t.vehicle_type, 'seats', t.seats, 'stops_version', t.stops_version,
                      'stops', t.stops) ORDER BY t.created_at), '[]'::jsonb)
                  FROM share_trips t WHERE t.state = 'OPEN'),
        'bookings', (SELECT coalesce(jsonb_agg(share_booking_plan(b) ORDER BY b.requested_at), '[]'::jsonb)
                     FROM share_bookings b WHERE b.state IN ('pending', 'confirmed', 'arrived', 'picked_up')))
$$;

-- A batch of changes of one kind in one transaction (src/share/lanes.c
-- sends each kind's changes in batches of up to 64): each item answered in
-- order, as its own call would have answered it. Each call catches its own
-- races (a subtransaction at most per item).
CREATE OR REPLACE FUNCTION share_batch(kind text, items jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    answers jsonb[] := '{}';
    it jsonb;
BEGIN
    FOR it IN SELECT value FROM jsonb_array_elements(items) LOOP
        answers := answers || CASE kind
            WHEN 'book' THEN share_book(it)
            WHEN 'confirm' THEN share_confirm(it)
            WHEN 'cancel' THEN share_cancel(it)
            WHEN 'leg' THEN share_leg(it)
        END;
    END LOOP;
    IF array_position(answers, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'share_batch: unknown kind %', kind;
    END IF;
    RETURN to_jsonb(answers);
END
$$;
