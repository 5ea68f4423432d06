-- Finding 8: a reset request does the same work whether the address has
-- an account or not, so its answer takes the same time: a mail goes to
-- the address either way (the reset link, or "no account here"), keyed by
-- the address for two minutes.  The caller cannot tell which.
DROP FUNCTION request_reset(text, bytea, bytea, jsonb);

CREATE FUNCTION request_reset(p_city text, p_index bytea, p_token bytea,
    p_mail_known jsonb, p_mail_unknown jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_id   bigint;
    v_key  text := 'reset:' || encode(p_index, 'hex') || ':'
                   || floor(extract(epoch FROM now()) / 120);
BEGIN
    SELECT id INTO v_id FROM citizens
    WHERE city = p_city AND email_index = p_index;

    IF v_id IS NULL THEN
        PERFORM enqueue_mail(p_city, v_key, p_mail_unknown);
        RETURN;
    END IF;

    INSERT INTO tokens (city, citizen_id, kind, token_hash, expires_at)
    VALUES (p_city, v_id, 'reset', p_token, now() + interval '1 hour');

    PERFORM enqueue_mail(p_city, v_key, p_mail_known);
END;
$$;
