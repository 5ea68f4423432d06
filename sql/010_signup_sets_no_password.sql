-- Finding 4 (pre-registered accounts): sign-up asks for the address and
-- the name only; the password is chosen on the page the verification
-- link opens, so only the owner of the mailbox ever sets it.  Accounts
-- never verified are deleted after 24 hours (the purge).

ALTER TABLE citizens ALTER COLUMN password_hash DROP NOT NULL;

-- a password set by whoever signed up with an address not theirs is void
UPDATE citizens SET password_hash = NULL WHERE verified_at IS NULL;

DROP FUNCTION citizen_signup(text, bytea, text, text, text, text, bytea,
                             jsonb, jsonb);

-- citizen_signup(city, index, email, name, kana, token, mail_new,
-- mail_exists): a new account without a password, with its verification
-- link; for an address whose account was never verified, that account
-- takes the name of this sign-up and a new link (one mail per ten
-- minutes); for a verified one, the "you already have an account" mail
-- (as often).  The caller cannot tell which: no account enumeration.
CREATE FUNCTION citizen_signup(p_city text, p_email_index bytea,
    p_email_enc text, p_name_enc text, p_kana_enc text, p_token bytea,
    p_mail_new jsonb, p_mail_exists jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id        bigint;
    v_verified  boolean;
    v_window    text := floor(extract(epoch FROM now()) / 600)::text;
BEGIN
    INSERT INTO citizens (city, email_index, email_enc, name_enc,
                          name_kana_enc)
    VALUES (p_city, p_email_index, p_email_enc, p_name_enc, p_kana_enc)
    ON CONFLICT (city, email_index) DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT id, verified_at IS NOT NULL INTO v_id, v_verified
        FROM citizens
        WHERE city = p_city AND email_index = p_email_index
        FOR UPDATE;

        IF v_verified THEN
            PERFORM enqueue_mail(p_city, 'exists:' || v_id || ':' || v_window,
                                 p_mail_exists);
            RETURN 'exists';
        END IF;

        UPDATE citizens
        SET name_enc = p_name_enc, name_kana_enc = p_kana_enc,
            email_enc = p_email_enc, updated_at = now()
        WHERE id = v_id;
    END IF;

    INSERT INTO tokens (city, citizen_id, kind, token_hash, expires_at)
    VALUES (p_city, v_id, 'verify', p_token, now() + interval '24 hours');

    PERFORM enqueue_mail(p_city, 'verify:' || v_id || ':' || v_window,
                         p_mail_new);
    RETURN 'created';
END;
$$;
