-- Re-encryption after a data key rotation (docs/operations.md 4.3): the
-- module's worker 0 reads the values not under the current key, a batch
-- at a time, decrypts and encrypts them again, and writes them back only
-- where they are still what it read.  Each target names one encrypted
-- value and the associated data (AAD) it was encrypted with; a column
-- encrypted later must be added here and to ngx_shinsei_rekey.c's list.

-- rekey_batch(target, key id, after id, limit): up to limit values of the
-- target not under key id, with an id above after, in id order
CREATE FUNCTION rekey_batch(p_target text, p_key text, p_after bigint,
                            p_limit int)
RETURNS TABLE (id bigint, aad text, value text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    CASE p_target
    WHEN 'citizens.email_enc' THEN
        RETURN QUERY SELECT c.id, 'email'::text, c.email_enc
            FROM citizens c
            WHERE c.id > p_after AND split_part(c.email_enc, ':', 1) <> p_key
            ORDER BY c.id LIMIT p_limit;
    WHEN 'citizens.name_enc' THEN
        RETURN QUERY SELECT c.id, 'name'::text, c.name_enc
            FROM citizens c
            WHERE c.id > p_after AND split_part(c.name_enc, ':', 1) <> p_key
            ORDER BY c.id LIMIT p_limit;
    WHEN 'citizens.name_kana_enc' THEN
        RETURN QUERY SELECT c.id, 'name_kana'::text, c.name_kana_enc
            FROM citizens c
            WHERE c.id > p_after
              AND split_part(c.name_kana_enc, ':', 1) <> p_key
            ORDER BY c.id LIMIT p_limit;
    WHEN 'outbox.recipient_enc' THEN
        RETURN QUERY SELECT o.id, 'email'::text, o.recipient_enc
            FROM outbox o
            WHERE o.id > p_after
              AND split_part(o.recipient_enc, ':', 1) <> p_key
            ORDER BY o.id LIMIT p_limit;
    WHEN 'outbox.body_enc' THEN
        RETURN QUERY SELECT o.id, 'mail_body'::text, o.body_enc
            FROM outbox o
            WHERE o.id > p_after AND split_part(o.body_enc, ':', 1) <> p_key
            ORDER BY o.id LIMIT p_limit;
    WHEN 'tokens.email_enc' THEN
        -- the new address of an e-mail change waiting for its confirmation
        RETURN QUERY SELECT t.id, 'email'::text, t.data->>'email_enc'
            FROM tokens t
            WHERE t.id > p_after AND t.data ? 'email_enc'
              AND split_part(t.data->>'email_enc', ':', 1) <> p_key
            ORDER BY t.id LIMIT p_limit;
    ELSE
        RAISE EXCEPTION 'rekey_batch: unknown target %', p_target;
    END CASE;
END;
$$;

-- rekey_apply(target, rows): rows is a JSON array of {id, old, new}; each
-- value is replaced only if it is still old (a resident may have changed
-- it meanwhile).  Returns how many were replaced.
CREATE FUNCTION rekey_apply(p_target text, p_rows json) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n  integer;
BEGIN
    CASE p_target
    WHEN 'citizens.email_enc' THEN
        UPDATE citizens c SET email_enc = v.new
        FROM json_to_recordset(p_rows) AS v(id bigint, old text, new text)
        WHERE c.id = v.id AND c.email_enc = v.old;
    WHEN 'citizens.name_enc' THEN
        UPDATE citizens c SET name_enc = v.new
        FROM json_to_recordset(p_rows) AS v(id bigint, old text, new text)
        WHERE c.id = v.id AND c.name_enc = v.old;
    WHEN 'citizens.name_kana_enc' THEN
        UPDATE citizens c SET name_kana_enc = v.new
        FROM json_to_recordset(p_rows) AS v(id bigint, old text, new text)
        WHERE c.id = v.id AND c.name_kana_enc = v.old;
    WHEN 'outbox.recipient_enc' THEN
        UPDATE outbox o SET recipient_enc = v.new
        FROM json_to_recordset(p_rows) AS v(id bigint, old text, new text)
        WHERE o.id = v.id AND o.recipient_enc = v.old;
    WHEN 'outbox.body_enc' THEN
        UPDATE outbox o SET body_enc = v.new
        FROM json_to_recordset(p_rows) AS v(id bigint, old text, new text)
        WHERE o.id = v.id AND o.body_enc = v.old;
    WHEN 'tokens.email_enc' THEN
        UPDATE tokens t
        SET data = jsonb_set(t.data, '{email_enc}', to_jsonb(v.new))
        FROM json_to_recordset(p_rows) AS v(id bigint, old text, new text)
        WHERE t.id = v.id AND t.data->>'email_enc' = v.old;
    ELSE
        RAISE EXCEPTION 'rekey_apply: unknown target %', p_target;
    END CASE;

    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
