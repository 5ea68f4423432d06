-- Sessions as the request core keeps them (ngx_shinsei_session.c): how
-- far each has authenticated, and the notifications that keep the
-- shared-memory session cache of every node true to this table.

-- 0 nobody logged in, 1 a password, 2 a password and a second factor
ALTER TABLE sessions
    ADD COLUMN auth_level smallint NOT NULL DEFAULT 0
        CHECK (auth_level BETWEEN 0 AND 2);

UPDATE sessions SET auth_level = 1 WHERE citizen_id IS NOT NULL;

-- session_forget(hashes): NOTIFY shinsei_session with the hashes (hex,
-- separated by spaces), at most 100 to a notification: a payload stays
-- far below the 8000 bytes NOTIFY takes.  Sent when the transaction
-- commits, so no node forgets a session that still lives.
CREATE FUNCTION session_forget(p_hashes bytea[]) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('shinsei_session', string_agg(encode(h, 'hex'), ' '))
    FROM (SELECT h, (row_number() OVER () - 1) / 100 AS chunk
          FROM unnest(p_hashes) AS h) x
    GROUP BY chunk;
$$;

-- every deleted session: logout, login (the old ID), a password change,
-- leaving (by cascade), the purge
CREATE FUNCTION sessions_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_forget(array_agg(id_hash)) FROM gone;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION sessions_deleted();

-- what a session shows of its resident changed: its cached copies go
CREATE FUNCTION citizen_shown_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_forget(array_agg(id_hash))
    FROM sessions WHERE citizen_id = NEW.id
    HAVING count(*) > 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER citizen_shown_changed
    AFTER UPDATE OF name_enc, name_kana_enc, email_enc ON citizens
    FOR EACH ROW
    WHEN (OLD.name_enc IS DISTINCT FROM NEW.name_enc
          OR OLD.name_kana_enc IS DISTINCT FROM NEW.name_kana_enc
          OR OLD.email_enc IS DISTINCT FROM NEW.email_enc)
    EXECUTE FUNCTION citizen_shown_changed();
