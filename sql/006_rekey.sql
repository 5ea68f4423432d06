-- Re-encryption after a data key rotation (docs/operations.md 4.3): the
-- module's worker 0 reads the values not under the current key, a batch
-- at a time, decrypts and encrypts them again, and writes them back only
-- where they are still what it read.  rekey_target names each encrypted
-- value with the associated data (AAD) it is encrypted with; a column
-- encrypted later must be added there and to ngx_shinsei_rekey.c's list.

-- rekey_target(target): {table, column, AAD} of a target, NULL if unknown
CREATE FUNCTION rekey_target(p_target text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_target
        WHEN 'citizens.email_enc'     THEN '{citizens,email_enc,email}'
        WHEN 'citizens.name_enc'      THEN '{citizens,name_enc,name}'
        WHEN 'citizens.name_kana_enc' THEN '{citizens,name_kana_enc,name_kana}'
        WHEN 'outbox.recipient_enc'   THEN '{outbox,recipient_enc,email}'
        WHEN 'outbox.body_enc'        THEN '{outbox,body_enc,mail_body}'
        -- the new address of an e-mail change waiting for its link: a
        -- field of tokens.data, not a column
        WHEN 'tokens.email_enc'       THEN '{tokens,email_enc,email}'
    END::text[]
$$;

-- rekey_batch(target, key id, after id, limit): up to limit values of the
-- target not under key id, with an id above after, in id order
CREATE FUNCTION rekey_batch(p_target text, p_key text, p_after bigint,
                            p_limit int)
RETURNS TABLE (id bigint, aad text, value text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t  text[] := rekey_target(p_target);
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'rekey_batch: unknown target %', p_target;
    END IF;

    IF t[1] = 'tokens' THEN
        RETURN QUERY SELECT k.id, t[3], k.data->>'email_enc'
            FROM tokens k
            WHERE k.id > p_after AND k.data ? 'email_enc'
              AND split_part(k.data->>'email_enc', ':', 1) <> p_key
            ORDER BY k.id LIMIT p_limit;
        RETURN;
    END IF;

    RETURN QUERY EXECUTE format(
        'SELECT id, %L::text, %I FROM %I'
        ' WHERE id > $1 AND split_part(%I, '':'', 1) <> $2'
        ' ORDER BY id LIMIT $3', t[3], t[2], t[1], t[2])
        USING p_after, p_key, p_limit;
END;
$$;

-- rekey_apply(target, rows): rows is a JSON array of {id, old, new}; each
-- value is replaced only if it is still old (a resident may have changed
-- it meanwhile).  The rows are locked in id order and a row locked by
-- another transaction is skipped, so the job never deadlocks with the
-- purge or a resident's change; what it skips, the next pass takes.
-- Returns how many values were replaced.
CREATE FUNCTION rekey_apply(p_target text, p_rows json) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t  text[] := rekey_target(p_target);
    n  integer;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'rekey_apply: unknown target %', p_target;
    END IF;

    IF t[1] = 'tokens' THEN
        UPDATE tokens k
        SET data = jsonb_set(k.data, '{email_enc}', to_jsonb(s.new))
        FROM (SELECT i.id, v.new FROM tokens i
              JOIN json_to_recordset(p_rows) AS v(id bigint, old text,
                                                  new text)
                ON i.id = v.id AND i.data->>'email_enc' = v.old
              ORDER BY i.id FOR UPDATE OF i SKIP LOCKED) s
        WHERE k.id = s.id;
    ELSE
        EXECUTE format(
            'UPDATE %1$I o SET %2$I = s.new'
            ' FROM (SELECT i.id, v.new FROM %1$I i'
            '  JOIN json_to_recordset($1) AS v(id bigint, old text, new text)'
            '  ON i.id = v.id AND i.%2$I = v.old'
            '  ORDER BY i.id FOR UPDATE OF i SKIP LOCKED) s'
            ' WHERE o.id = s.id', t[1], t[2])
            USING p_rows;
    END IF;

    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
