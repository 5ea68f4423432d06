-- Finding 2: no address and no account can be made to receive, or to
-- cause, more than 10 of the city's mails in an hour.  recipient_index is
-- the keyed index of the address (as citizens.email_index); account names
-- the logged-in user whose action caused the mail ('citizen:<id>'), if
-- one did.
ALTER TABLE outbox
    ADD COLUMN recipient_index bytea,
    ADD COLUMN account text;

CREATE INDEX outbox_recipient_recent ON outbox (city, recipient_index,
                                                created_at)
    WHERE recipient_index IS NOT NULL;
CREATE INDEX outbox_account_recent ON outbox (city, account, created_at)
    WHERE account IS NOT NULL;

-- enqueue_mail(city, key, mail): mail is the JSON the module builds
-- (recipient_enc, recipient_index, account, from_addr, from_name,
-- subject, body_enc).  A second mail with the same key is dropped, and so
-- is a mail over the hourly cap of its address or its account, with a
-- warning that names the key only.
CREATE OR REPLACE FUNCTION enqueue_mail(p_city text, p_key text,
    p_mail jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_index    bytea := decode(p_mail->>'recipient_index', 'hex');
    v_account  text := p_mail->>'account';
BEGIN
    IF p_mail IS NULL THEN
        RETURN;
    END IF;

    IF (v_index IS NOT NULL
        AND (SELECT count(*) FROM outbox
             WHERE city = p_city AND recipient_index = v_index
               AND created_at > now() - interval '1 hour') >= 10)
       OR (v_account IS NOT NULL
           AND (SELECT count(*) FROM outbox
                WHERE city = p_city AND account = v_account
                  AND created_at > now() - interval '1 hour') >= 10)
    THEN
        RAISE WARNING 'mail % not queued: over the hourly cap of its '
                      'address or account', p_key;
        RETURN;
    END IF;

    INSERT INTO outbox (city, key, recipient_enc, recipient_index, account,
                        from_addr, from_name, subject, body_enc, message_id)
    VALUES (p_city, p_key, p_mail->>'recipient_enc', v_index, v_account,
            p_mail->>'from_addr', p_mail->>'from_name', p_mail->>'subject',
            p_mail->>'body_enc',
            gen_random_uuid() || '@' || split_part(p_mail->>'from_addr', '@', 2))
    ON CONFLICT (city, key) DO NOTHING;
END;
$$;
