-- The payment hand-off (tables: sql/016_payments.sql, 019): a trip that ends
-- with money owed gets its payment and payment.requested from a trigger on
-- its ending outbox row (a shared rider's, share_payment_request() in
-- 50_share.sql, at their drop-off; paid_for names either); the provider's
-- results (payment_result(), from src/pricing/payments.c) and an
-- operator's clearing of a hold (payment_clear()) change it, and every
-- change of a rider's hold is NOTIFYed on ridehail_payments.

CREATE OR REPLACE FUNCTION payment_json(p payments) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'payment_id', p.id, 'trip_id', p.paid_for, 'rider_id', p.rider_id, 'kind', p.kind,
        'idempotency_key', p.idempotency_key, 'amount', p.amount, 'currency', p.currency, 'state', p.state,
        'attempts', p.attempts, 'provider_ref', p.provider_ref, 'failure_reason', p.failure_reason,
        'requested_at', rh_ts(p.requested_at), 'settled_at', rh_ts(p.settled_at),
        'cleared_by', p.cleared_by, 'cleared_at', rh_ts(p.cleared_at),
        'rider_held', EXISTS (SELECT 1 FROM payments x WHERE x.rider_id = p.rider_id AND x.state = 'failed'
                                                        AND x.cleared_at IS NULL)))
$$;

-- The rider's hold as a notification payload.
CREATE OR REPLACE FUNCTION payment_hold_notify(p_rider uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t uuid;
BEGIN
    SELECT paid_for INTO t FROM payments WHERE rider_id = p_rider AND state = 'failed' AND cleared_at IS NULL
     ORDER BY requested_at DESC LIMIT 1;
    PERFORM pg_notify('ridehail_payments',
                      p_rider::text || CASE WHEN t IS NULL THEN ':free' ELSE ':held:' || t::text END);
END
$$;

-- A new payment's payment.requested (correlated with what it pays for: the
-- trip, or the shared booking).
CREATE OR REPLACE FUNCTION payment_requested_emit(p payments) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES ('payment.requested', 'ridehaild', p.paid_for, p.id, 1, jsonb_build_object(
        'payment_id', p.id, 'trip_id', p.paid_for, 'rider_id', p.rider_id, 'kind', p.kind,
        'idempotency_key', p.idempotency_key, 'amount', rh_money(p.amount, p.currency),
        'requested_at', rh_ts(p.requested_at)));
END
$$;

-- A trip that ends with money owed: its payment and payment.requested,
-- written when the trip's trip.finished or trip.cancelled row is (a trigger
-- on outbox: every path that ends a trip writes one of them, in its
-- transaction; the trip row is already updated by then). The payment's
-- event comes after the trip's in id order, so a consumer reading the
-- outbox in order sees the trip end first.
CREATE OR REPLACE FUNCTION trip_payment_request() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t trips;
    amt bigint;
    p payments;
BEGIN
    SELECT * INTO t FROM trips WHERE id = NEW.aggregate_id;
    amt := CASE WHEN NEW.event_type = 'trip.finished' THEN t.fare_final ELSE t.cancel_fee END;
    IF t.id IS NULL OR amt IS NULL OR amt <= 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO payments (trip_id, rider_id, kind, idempotency_key, amount, currency)
    VALUES (t.id, t.rider_id, CASE WHEN NEW.event_type = 'trip.finished' THEN 'fare' ELSE 'cancellation_fee' END,
            'pay_' || replace(t.id::text, '-', ''), amt, t.currency)
    ON CONFLICT (trip_id) DO NOTHING
    RETURNING * INTO p;
    IF p.id IS NOT NULL THEN
        PERFORM payment_requested_emit(p);
    END IF;
    RETURN NULL;
END
$$;

-- The trigger is here, beside its function, not in a migration: a
-- migration runs before the function files, when trip_payment_request()
-- does not exist yet in a new database. CREATE OR REPLACE makes it one
-- more statement that applying the files again leaves as it is (and puts
-- back if a migration dropped the function with CASCADE); removing it
-- takes a migration that drops it, as removing a function does.
CREATE OR REPLACE TRIGGER outbox_payment_request AFTER INSERT ON outbox FOR EACH ROW
    WHEN (NEW.event_type IN ('trip.finished', 'trip.cancelled'))
    EXECUTE FUNCTION trip_payment_request();

-- A provider's result for the trip's payment. p_event: the provider's id of
-- this result; p_hash: a hash of the callback's body. Returns (status,
-- body): 200 and the payment ({replayed: true} when this event was taken
-- before with the same body: nothing changes); 404 {reason: not_found} no
-- payment for the trip; 422 {reason, field} the idempotency key or the
-- amount is not the payment's; 409 {reason: event_reused} the event id with
-- another body, {reason: already_succeeded} a failure after a success.
CREATE OR REPLACE FUNCTION payment_result(p_trip uuid, p_key text, p_event text, p_status text, p_ref text, p_reason text,
                               p_amount bigint, p_currency text, p_hash text, OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p payments;
    prior payment_results;
    held_before boolean;
    held_after boolean;
BEGIN
    SELECT * INTO p FROM payments WHERE paid_for = p_trip FOR UPDATE;
    IF NOT FOUND THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found', 'field', 'trip_id');
        RETURN;
    END IF;
    IF p.idempotency_key <> p_key THEN
        status := 422;
        body := jsonb_build_object('reason', 'idempotency_key_mismatch', 'field', 'idempotency_key');
        RETURN;
    END IF;
    IF p_amount IS NOT NULL AND (p_amount <> p.amount OR p_currency IS DISTINCT FROM p.currency::text) THEN
        status := 422;
        body := jsonb_build_object('reason', 'amount_mismatch', 'field', 'amount');
        RETURN;
    END IF;
    SELECT * INTO prior FROM payment_results WHERE payment_id = p.id AND provider_event_id = p_event;
    IF FOUND THEN
        IF prior.body_hash = p_hash THEN
            status := 200;
            body := payment_json(p) || jsonb_build_object('replayed', true);
        ELSE
            status := 409;
            body := jsonb_build_object('reason', 'event_reused', 'field', 'event_id');
        END IF;
        RETURN;
    END IF;
    IF p.state = 'succeeded' THEN
        IF p_status = 'succeeded' THEN -- paid already: nothing to do
            status := 200;
            body := payment_json(p) || jsonb_build_object('replayed', true);
        ELSE
            status := 409;
            body := jsonb_build_object('reason', 'already_succeeded', 'field', 'status');
        END IF;
        RETURN;
    END IF;
    held_before := EXISTS (SELECT 1 FROM payments x WHERE x.rider_id = p.rider_id AND x.state = 'failed'
                                                   AND x.cleared_at IS NULL);
    INSERT INTO payment_results (payment_id, provider_event_id, status, body_hash)
    VALUES (p.id, p_event, p_status, p_hash);
    UPDATE payments SET state = p_status, attempts = attempts + 1, provider_ref = COALESCE(p_ref, provider_ref),
                        failure_reason = CASE WHEN p_status = 'failed' THEN p_reason END,
                        settled_at = now(), event_seq = event_seq + 1,
                        cleared_by = NULL, cleared_at = NULL
     WHERE id = p.id RETURNING * INTO p;
    INSERT INTO outbox (event_type, producer, correlation_id, aggregate_id, aggregate_seq, payload)
    VALUES ('payment.' || p_status, 'ridehaild', p.paid_for, p.id, p.event_seq, jsonb_strip_nulls(jsonb_build_object(
        'payment_id', p.id, 'trip_id', p.paid_for, 'rider_id', p.rider_id, 'idempotency_key', p.idempotency_key,
        'amount', rh_money(p.amount, p.currency), 'attempt', p.attempts, 'provider_ref', p.provider_ref,
        'failure_reason', p.failure_reason, 'settled_at', rh_ts(p.settled_at))));
    held_after := EXISTS (SELECT 1 FROM payments x WHERE x.rider_id = p.rider_id AND x.state = 'failed'
                                                  AND x.cleared_at IS NULL);
    IF held_after OR held_before THEN
        PERFORM payment_hold_notify(p.rider_id);
    END IF;
    status := 200;
    body := payment_json(p);
END
$$;

-- An operator lifts the hold of a failed payment (the debt stays on the
-- payment; the rider may ride again). 200 and the payment; cleared already:
-- 200 and the payment as it is ({replayed: true}, nothing written); 404; 409
-- {reason: not_failed} unless the payment failed.
CREATE OR REPLACE FUNCTION payment_clear(p_trip uuid, p_actor text, p_reason text, OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p payments;
BEGIN
    SELECT * INTO p FROM payments WHERE paid_for = p_trip FOR UPDATE;
    IF NOT FOUND THEN
        status := 404;
        body := jsonb_build_object('reason', 'not_found', 'field', 'trip_id');
        RETURN;
    END IF;
    IF p.state <> 'failed' THEN
        status := 409;
        body := jsonb_build_object('reason', 'not_failed', 'state', p.state);
        RETURN;
    END IF;
    IF p.cleared_at IS NOT NULL THEN
        status := 200;
        body := payment_json(p) || jsonb_build_object('replayed', true);
        RETURN;
    END IF;
    UPDATE payments SET cleared_by = p_actor, cleared_at = now() WHERE id = p.id RETURNING * INTO p;
    INSERT INTO pricing_log (actor, action, subject, detail, book_version)
    VALUES (p_actor, 'payment.hold.clear', p.paid_for::text,
            jsonb_strip_nulls(jsonb_build_object('rider_id', p.rider_id, 'amount', p.amount, 'reason', p_reason)),
            (SELECT version FROM pricing_book));
    PERFORM payment_hold_notify(p.rider_id);
    status := 200;
    body := payment_json(p);
END
$$;
