-- The foundation: cities (tenants), their procedures with fees, sessions.
-- Every table holding a city's data carries the city key, and every query
-- filters by it (REQ N-SEC-1).  Money is integer yen.

CREATE TABLE cities (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z0-9_-]{1,32}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    name_kana   text,
    prefecture  text,
    contact     jsonb NOT NULL DEFAULT '{}',
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- 戸籍・住民票関係, 税関係, ...: how the catalogue is grouped.
CREATE TABLE procedure_groups (
    city        text NOT NULL REFERENCES cities (code),
    code        text NOT NULL CHECK (code ~ '^[a-z0-9_-]{1,32}$'),
    name        text NOT NULL,
    sort        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (city, code)
);

CREATE TABLE procedures (
    id            bigserial PRIMARY KEY,
    city          text NOT NULL REFERENCES cities (code),
    code          text NOT NULL CHECK (code ~ '^[a-z0-9_-]{1,32}$'),
    group_code    text NOT NULL,
    name          text NOT NULL,
    summary       text NOT NULL DEFAULT '',
    description   text NOT NULL DEFAULT '',
    eligibility   text NOT NULL DEFAULT '',
    requirements  text[] NOT NULL DEFAULT '{}',
    delivery      text NOT NULL DEFAULT '',
    sort          integer NOT NULL DEFAULT 0,
    published     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (city, code),
    UNIQUE (id, city),
    FOREIGN KEY (city, group_code) REFERENCES procedure_groups (city, code)
);

-- What a procedure costs: 'fee' items are per copy (手数料), 'postage'
-- items are added once when the certificate is mailed (郵送料).
CREATE TABLE fee_items (
    id            bigserial PRIMARY KEY,
    city          text NOT NULL,
    procedure_id  bigint NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('fee', 'postage')),
    label         text NOT NULL,
    amount        integer NOT NULL CHECK (amount >= 0),
    per_copy      boolean NOT NULL DEFAULT true,
    sort          integer NOT NULL DEFAULT 0,
    -- the fee belongs to a procedure of the same city
    FOREIGN KEY (procedure_id, city) REFERENCES procedures (id, city)
        ON DELETE CASCADE
);

CREATE INDEX fee_items_procedure ON fee_items (procedure_id, kind, sort);

-- Logins and anonymous visits with forms.  The browser holds a random
-- 256-bit ID; only its SHA-256 is stored here.
CREATE TABLE sessions (
    id_hash           bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    city              text NOT NULL REFERENCES cities (code),
    kind              text NOT NULL DEFAULT 'citizen'
                      CHECK (kind IN ('citizen', 'staff')),
    citizen_id        bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    authenticated_at  timestamptz
);

CREATE INDEX sessions_last_seen ON sessions (last_seen_at);
