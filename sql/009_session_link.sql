-- The token of a mailed link, moved from the URL into the session that
-- opened it (finding 7): the page redirects to itself without "?t=", so
-- the token reaches no log line and no Referer.  Only its hash is kept,
-- as in tokens.
ALTER TABLE sessions
    ADD COLUMN link_kind text CHECK (link_kind IN ('verify', 'reset', 'email')),
    ADD COLUMN link_hash bytea CHECK (length(link_hash) = 32);

-- session_link(city, session, kind): the hash of the link the session
-- opened for that kind of token, or NULL
CREATE FUNCTION session_link(p_city text, p_session bytea, p_kind text)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT link_hash FROM sessions
    WHERE id_hash = p_session AND city = p_city AND link_kind = p_kind;
$$;
