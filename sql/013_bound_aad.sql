-- Finding 10: the associated data of every encrypted value names its
-- table, column and row ("citizens.name_enc:42"), so that whoever can
-- write to the database cannot swap ciphertexts between rows or columns.
-- The row of an outbox value is its message_id (the module makes it
-- before the row exists); the new address of an e-mail change, kept in
-- tokens.data until its link is followed, is already the value of
-- citizens.email_enc of its citizen.
--
-- Values written before, whose associated data was the column's name
-- only ("name"), get ".v1" after their key id: the module reads them so,
-- and its re-encryption job (ngx_shinsei_rekey.c), which takes every value
-- not under the current key id, writes them again bound to their row.

UPDATE citizens SET
    email_enc = regexp_replace(email_enc, '^([A-Za-z0-9_-]+):', '\1.v1:'),
    name_enc = regexp_replace(name_enc, '^([A-Za-z0-9_-]+):', '\1.v1:'),
    name_kana_enc = regexp_replace(name_kana_enc, '^([A-Za-z0-9_-]+):',
                                   '\1.v1:');

UPDATE outbox SET
    recipient_enc = regexp_replace(recipient_enc, '^([A-Za-z0-9_-]+):',
                                   '\1.v1:'),
    body_enc = regexp_replace(body_enc, '^([A-Za-z0-9_-]+):', '\1.v1:');

UPDATE tokens SET
    data = jsonb_set(data, '{email_enc}', to_jsonb(regexp_replace(
        data->>'email_enc', '^([A-Za-z0-9_-]+):', '\1.v1:')))
WHERE data ? 'email_enc';

-- rekey_target(target): {table, column, the prefix of its associated
-- data}, NULL if unknown
CREATE OR REPLACE FUNCTION rekey_target(p_target text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_target
        WHEN 'citizens.email_enc'     THEN '{citizens,email_enc,citizens.email_enc}'
        WHEN 'citizens.name_enc'      THEN '{citizens,name_enc,citizens.name_enc}'
        WHEN 'citizens.name_kana_enc' THEN '{citizens,name_kana_enc,citizens.name_kana_enc}'
        WHEN 'outbox.recipient_enc'   THEN '{outbox,recipient_enc,outbox.recipient_enc}'
        WHEN 'outbox.body_enc'        THEN '{outbox,body_enc,outbox.body_enc}'
        WHEN 'tokens.email_enc'       THEN '{tokens,email_enc,citizens.email_enc}'
    END::text[]
$$;

-- rekey_batch(target, key id, after id, limit): up to limit values of the
-- target not under key id, with an id above after, in id order, each
-- with its associated data
CREATE OR REPLACE FUNCTION rekey_batch(p_target text, p_key text,
                                       p_after bigint, p_limit int)
RETURNS TABLE (id bigint, aad text, value text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t  text[] := rekey_target(p_target);
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'rekey_batch: unknown target %', p_target;
    END IF;

    IF t[1] = 'tokens' THEN
        RETURN QUERY SELECT k.id, t[3] || ':' || k.citizen_id,
                            k.data->>'email_enc'
            FROM tokens k
            WHERE k.id > p_after AND k.data ? 'email_enc'
              AND split_part(k.data->>'email_enc', ':', 1) <> p_key
            ORDER BY k.id LIMIT p_limit;
        RETURN;
    END IF;

    RETURN QUERY EXECUTE format(
        'SELECT id, %L || '':'' || %s, %I FROM %I'
        ' WHERE id > $1 AND split_part(%I, '':'', 1) <> $2'
        ' ORDER BY id LIMIT $3', t[3],
        CASE t[1] WHEN 'outbox' THEN 'message_id' ELSE 'id' END,
        t[2], t[1], t[2])
        USING p_after, p_key, p_limit;
END;
$$;

-- enqueue_mail(city, key, mail): as sql/011, with the message_id the
-- module made (its values' associated data names it)
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
            p_mail->>'body_enc', p_mail->>'message_id')
    ON CONFLICT (city, key) DO NOTHING;
END;
$$;

-- citizen_signup_id(city, index): the row a sign-up's values are
-- encrypted for: the address's account, or a new id.
--
-- citizen_signup(city, id, index, email, name, kana, token, mail_new,
-- mail_exists): as sql/010, for that id.  Should another sign-up of the
-- same address have made its account meanwhile (under another id), this
-- one writes nothing and answers 'taken': that one's mail went to the
-- address, and the page after sign-up is the same.
DROP FUNCTION citizen_signup(text, bytea, text, text, text, bytea, jsonb,
                             jsonb);

CREATE FUNCTION citizen_signup_id(p_city text, p_index bytea)
RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce((SELECT id FROM citizens
                     WHERE city = p_city AND email_index = p_index),
                    nextval('citizens_id_seq'));
$$;

CREATE FUNCTION citizen_signup(p_city text, p_id bigint, p_email_index bytea,
    p_email_enc text, p_name_enc text, p_kana_enc text, p_token bytea,
    p_mail_new jsonb, p_mail_exists jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id        bigint;
    v_verified  boolean;
    v_window    text := floor(extract(epoch FROM now()) / 600)::text;
BEGIN
    INSERT INTO citizens (id, city, email_index, email_enc, name_enc,
                          name_kana_enc)
    VALUES (p_id, p_city, p_email_index, p_email_enc, p_name_enc, p_kana_enc)
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT id, verified_at IS NOT NULL INTO v_id, v_verified
        FROM citizens
        WHERE city = p_city AND email_index = p_email_index
        FOR UPDATE;

        IF v_id IS NULL OR v_id <> p_id THEN
            -- the values are bound to another row than the address's
            RETURN 'taken';
        END IF;

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

-- A worker of the version before, still running between this migration
-- and the reload, writes values of the first format without the mark.
-- The module's connections say "shinsei.aad=row" (ngx_shinsei_pg_conf.c);
-- a value any other client writes is marked as of the first format, so
-- the module reads an unmarked value one way only: bound to its row.
CREATE FUNCTION mark_first_format(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(p_value, '^([A-Za-z0-9_-]+):', '\1.v1:');
$$;

CREATE FUNCTION first_format_marked() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o  jsonb := CASE TG_OP WHEN 'UPDATE' THEN to_jsonb(OLD) END;
    n  jsonb := to_jsonb(NEW);
    c  text;
BEGIN
    IF current_setting('shinsei.aad', true) IS NOT DISTINCT FROM 'row' THEN
        RETURN NEW;
    END IF;

    -- the values this statement wrote, not those it left as they were
    FOREACH c IN ARRAY CASE TG_TABLE_NAME
        WHEN 'citizens' THEN '{email_enc,name_enc,name_kana_enc}'::text[]
        WHEN 'outbox' THEN '{recipient_enc,body_enc}'::text[]
        ELSE '{}'::text[] END
    LOOP
        IF n->>c IS NOT NULL AND n->>c IS DISTINCT FROM o->>c THEN
            n := jsonb_set(n, ARRAY[c], to_jsonb(mark_first_format(n->>c)));
        END IF;
    END LOOP;

    IF TG_TABLE_NAME = 'tokens' AND n->'data'->>'email_enc' IS NOT NULL
       AND n->'data'->>'email_enc' IS DISTINCT FROM o->'data'->>'email_enc'
    THEN
        n := jsonb_set(n, '{data,email_enc}', to_jsonb(
            mark_first_format(n->'data'->>'email_enc')));
    END IF;

    RETURN jsonb_populate_record(NEW, n);
END;
$$;

CREATE TRIGGER citizens_first_format
    BEFORE INSERT OR UPDATE OF email_enc, name_enc, name_kana_enc
    ON citizens FOR EACH ROW EXECUTE FUNCTION first_format_marked();
CREATE TRIGGER outbox_first_format
    BEFORE INSERT OR UPDATE OF recipient_enc, body_enc
    ON outbox FOR EACH ROW EXECUTE FUNCTION first_format_marked();
CREATE TRIGGER tokens_first_format
    BEFORE INSERT OR UPDATE OF data
    ON tokens FOR EACH ROW EXECUTE FUNCTION first_format_marked();
