-- Resident accounts, single-use e-mail tokens, failed logins and the mail
-- outbox (REQ U-AUTH-1, U-AUTH-2, N-SEC-1, N-SEC-3).
--
-- Personal data is stored encrypted by the module (AES-256-GCM, columns
-- *_enc, "keyid:base64"); look-ups by e-mail use email_index, a keyed
-- HMAC of the normalized address.  Nothing here can read either.

CREATE TABLE citizens (
    id             bigserial PRIMARY KEY,
    city           text NOT NULL REFERENCES cities (code),
    email_index    bytea NOT NULL CHECK (length(email_index) = 32),
    email_enc      text NOT NULL,
    name_enc       text NOT NULL,
    name_kana_enc  text NOT NULL,
    password_hash  text NOT NULL,
    verified_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (city, email_index),
    UNIQUE (id, city)
);

ALTER TABLE sessions
    ADD FOREIGN KEY (citizen_id, city) REFERENCES citizens (id, city)
        ON DELETE CASCADE;

CREATE INDEX sessions_citizen ON sessions (citizen_id)
    WHERE citizen_id IS NOT NULL;

-- verify: the address of a new account; reset: a forgotten password;
-- email: a new address for an account (data holds it, encrypted).
CREATE TABLE tokens (
    id           bigserial PRIMARY KEY,
    city         text NOT NULL,
    citizen_id   bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('verify', 'reset', 'email')),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    data         jsonb NOT NULL DEFAULT '{}',
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (citizen_id, city) REFERENCES citizens (id, city)
        ON DELETE CASCADE
);

CREATE INDEX tokens_citizen ON tokens (citizen_id, kind);

-- Password attempts not (yet) known to be right, by address: an address
-- without an account is counted like one with, so the pause that follows
-- repeated failures does not tell which addresses have accounts.
CREATE TABLE login_failures (
    city         text NOT NULL,
    email_index  bytea NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX login_failures_recent ON login_failures (city, email_index, at);

-- Mails to send, written in the same transaction as the change causing
-- them; (city, key) names the event, so each is sent at most once.  The
-- Message-ID is fixed here: a mail sent again after a crash is the same
-- message.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    city             text NOT NULL REFERENCES cities (code),
    key              text NOT NULL,
    recipient_enc    text NOT NULL,
    from_addr        text NOT NULL,
    from_name        text NOT NULL,
    subject          text NOT NULL,
    body_enc         text NOT NULL,
    message_id       text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    claim            uuid,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (city, key)
);

CREATE INDEX outbox_due ON outbox (next_attempt_at)
    WHERE status IN ('pending', 'sending');

-- wakes the drainers of every worker when the transaction commits
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shinsei_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- enqueue_mail(city, key, mail): mail is the JSON the module builds
-- (recipient_enc, from_addr, from_name, subject, body_enc).  A second
-- mail with the same key is dropped.
CREATE FUNCTION enqueue_mail(p_city text, p_key text, p_mail jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO outbox (city, key, recipient_enc, from_addr, from_name,
                        subject, body_enc, message_id)
    SELECT p_city, p_key, p_mail->>'recipient_enc', p_mail->>'from_addr',
           p_mail->>'from_name', p_mail->>'subject', p_mail->>'body_enc',
           gen_random_uuid() || '@'
           || split_part(p_mail->>'from_addr', '@', 2)
    WHERE p_mail IS NOT NULL
    ON CONFLICT (city, key) DO NOTHING;
$$;

-- Sign-up: a new account with its verification token and mail, or, for
-- an address that has an account, the "you already have an account" mail
-- (at most one per ten minutes).  The caller cannot tell which: no
-- account enumeration.
CREATE FUNCTION citizen_signup(p_city text, p_email_index bytea,
    p_email_enc text, p_name_enc text, p_kana_enc text, p_password text,
    p_token bytea, p_mail_new jsonb, p_mail_exists jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id     bigint;
    v_token  bigint;
BEGIN
    INSERT INTO citizens (city, email_index, email_enc, name_enc,
                          name_kana_enc, password_hash)
    VALUES (p_city, p_email_index, p_email_enc, p_name_enc, p_kana_enc,
            p_password)
    ON CONFLICT (city, email_index) DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM citizens
        WHERE city = p_city AND email_index = p_email_index;
        PERFORM enqueue_mail(p_city, 'exists:' || v_id || ':'
                             || floor(extract(epoch FROM now()) / 600),
                             p_mail_exists);
        RETURN 'exists';
    END IF;

    INSERT INTO tokens (city, citizen_id, kind, token_hash, expires_at)
    VALUES (p_city, v_id, 'verify', p_token, now() + interval '24 hours')
    RETURNING id INTO v_token;

    PERFORM enqueue_mail(p_city, 'verify:' || v_token, p_mail_new);
    RETURN 'created';
END;
$$;

-- use_token(city, kind, hash): spends a token.  Answers the token's row
-- with status 'ok', or why it cannot be used: 'unknown', 'used',
-- 'expired'.
CREATE FUNCTION use_token(p_city text, p_kind text, p_hash bytea,
    OUT status text, OUT citizen_id bigint, OUT data jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    t  tokens%ROWTYPE;
BEGIN
    SELECT * INTO t FROM tokens
    WHERE city = p_city AND kind = p_kind AND token_hash = p_hash
    FOR UPDATE;

    IF NOT FOUND THEN
        status := 'unknown';
    ELSIF t.used_at IS NOT NULL THEN
        status := 'used';
    ELSIF t.expires_at <= now() THEN
        status := 'expired';
    ELSE
        UPDATE tokens SET used_at = now() WHERE id = t.id;
        status := 'ok';
        citizen_id := t.citizen_id;
        data := t.data;
    END IF;
END;
$$;

-- token_state(city, kind, hash): the same answer without spending it,
-- for the page that asks the resident to confirm.
CREATE FUNCTION token_state(p_city text, p_kind text, p_hash bytea)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT CASE WHEN used_at IS NOT NULL THEN 'used'
                    WHEN expires_at <= now() THEN 'expired'
                    ELSE 'ok' END
        FROM tokens
        WHERE city = p_city AND kind = p_kind AND token_hash = p_hash),
        'unknown');
$$;

-- change_email(city, token): the new address of an e-mail token replaces
-- the account's one; 'taken' if another account has it meanwhile.
CREATE FUNCTION change_email(p_city text, p_token bytea)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t  record;
BEGIN
    SELECT * INTO t FROM use_token(p_city, 'email', p_token);

    IF t.status <> 'ok' THEN
        RETURN t.status;
    END IF;

    BEGIN
        UPDATE citizens
        SET email_enc = t.data->>'email_enc',
            email_index = decode(t.data->>'email_index', 'hex'),
            verified_at = coalesce(verified_at, now()),
            updated_at = now()
        WHERE id = t.citizen_id AND city = p_city;
    EXCEPTION WHEN unique_violation THEN
        RETURN 'taken';
    END;

    RETURN 'ok';
END;
$$;

-- login_attempt(city, address index): the pause after repeated failures
-- (OWASP ASVS 4.0.3 2.2.1).  After 5 failures within 15 minutes an
-- address is paused 30 seconds, doubling with each further failure, at
-- most 15 minutes; attempts while paused are not checked and not counted.
-- An attempt is counted before its password is checked (a right one
-- removes the count), and attempts on one address take turns, so that
-- guesses sent in parallel cannot all pass under the limit.
CREATE FUNCTION login_attempt(p_city text, p_index bytea,
    OUT paused integer, OUT failures integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_last  timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(
        p_city || ':' || encode(p_index, 'hex'), 7165002));

    SELECT count(*), max(at) INTO failures, v_last
    FROM login_failures
    WHERE city = p_city AND email_index = p_index
      AND at > now() - interval '15 minutes';

    paused := 0;

    IF failures >= 5 THEN
        paused := greatest(0,
            least(30 << least(failures - 5, 5), 900)
            - floor(extract(epoch FROM now() - v_last))::integer);
    END IF;

    IF paused = 0 THEN
        INSERT INTO login_failures (city, email_index)
        VALUES (p_city, p_index);
    END IF;
END;
$$;

-- request_reset(city, address index, token, mail): the same work for an
-- address with an account and without; only with one is anything kept.
CREATE FUNCTION request_reset(p_city text, p_index bytea, p_token bytea,
    p_mail jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_id     bigint;
    v_token  bigint;
BEGIN
    SELECT id INTO v_id FROM citizens
    WHERE city = p_city AND email_index = p_index;

    IF v_id IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO tokens (city, citizen_id, kind, token_hash, expires_at)
    VALUES (p_city, v_id, 'reset', p_token, now() + interval '1 hour')
    RETURNING id INTO v_token;

    -- one mail per account and two minutes, however often it is asked for
    PERFORM enqueue_mail(p_city, 'reset:' || v_id || ':'
                         || floor(extract(epoch FROM now()) / 120), p_mail);
END;
$$;
