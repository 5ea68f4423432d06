-- Least privilege (REQ N-PRIV-1, N-SEC-1): the tables belong to the owner
-- role that runs these migrations (shinsei_owner); the module connects as
-- a login role (shinsei) that is a member of shinsei_runtime, which holds
-- only the grants below, table by table.  It cannot change the schema,
-- TRUNCATE, or write a table it only reads.  A later migration that adds
-- a table grants what the module needs of it, in the same file.
--
-- The roles are the cluster's, not the database's: build.sh pg-up makes
-- them, an operator makes them once (docs/operations.md 2.4).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shinsei_runtime')
    THEN
        RAISE EXCEPTION 'the role shinsei_runtime does not exist'
            USING HINT = 'CREATE ROLE shinsei_runtime NOLOGIN; GRANT '
                         'shinsei_runtime TO shinsei; then migrate again '
                         '(docs/operations.md 2.4)';
    END IF;
END;
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, shinsei_runtime;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC, shinsei_runtime;

-- what the city publishes: read only (the staff site's form builder will
-- grant its own writes)
GRANT SELECT ON cities, procedure_groups, procedures, fee_items,
                catalogue_docs
    TO shinsei_runtime;

-- accounts, their sessions and links, the mail queue: the module's own
GRANT SELECT, INSERT, UPDATE, DELETE ON citizens, sessions, tokens, outbox
    TO shinsei_runtime;
GRANT SELECT, INSERT, DELETE ON login_failures TO shinsei_runtime;

GRANT USAGE ON SEQUENCE citizens_id_seq, tokens_id_seq, outbox_id_seq
    TO shinsei_runtime;

-- schema_migrations: nothing
