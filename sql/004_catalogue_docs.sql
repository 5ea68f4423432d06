-- The catalogue page's whole view model, kept ready per city: the page is
-- the most visited one, and reading one row is a third of the database's
-- work of building it from procedures and fees on every request.  Triggers
-- rebuild it in the same transaction as any change of what it shows.

CREATE TABLE catalogue_docs (
    city        text PRIMARY KEY REFERENCES cities (code) ON DELETE CASCADE,
    doc         json NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION catalogue_doc(p_city text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('groups', coalesce(json_agg(
        json_build_object('code', g.code, 'name', g.name,
                          'procedures', ps.list) ORDER BY g.sort), '[]'))
    FROM procedure_groups g
    CROSS JOIN LATERAL (
        SELECT json_agg(json_build_object('code', p.code, 'name', p.name,
                        'summary', p.summary, 'fee', fee.text)
                        ORDER BY p.sort) AS list
        FROM procedures p
        CROSS JOIN LATERAL (
            SELECT to_char(min(f.amount), 'FM999,999,990')
                   || CASE WHEN min(f.amount) < max(f.amount)
                           THEN '円から' ELSE '円' END AS text
            FROM fee_items f
            WHERE f.city = p.city AND f.procedure_id = p.id
              AND f.kind = 'fee'
        ) fee
        WHERE p.city = g.city AND p.group_code = g.code AND p.published
    ) ps
    WHERE g.city = p_city AND ps.list IS NOT NULL;
$$;

CREATE FUNCTION refresh_catalogue(p_city text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO catalogue_docs (city, doc)
    SELECT p_city, catalogue_doc(p_city)
    WHERE EXISTS (SELECT 1 FROM cities WHERE code = p_city)
    ON CONFLICT (city) DO UPDATE SET doc = EXCLUDED.doc, updated_at = now();
$$;

CREATE FUNCTION catalogue_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM refresh_catalogue(OLD.city);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.city <> OLD.city) THEN
        PERFORM refresh_catalogue(NEW.city);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER catalogue_changed AFTER INSERT OR UPDATE OR DELETE
    ON procedure_groups FOR EACH ROW EXECUTE FUNCTION catalogue_changed();
CREATE TRIGGER catalogue_changed AFTER INSERT OR UPDATE OR DELETE
    ON procedures FOR EACH ROW EXECUTE FUNCTION catalogue_changed();
CREATE TRIGGER catalogue_changed AFTER INSERT OR UPDATE OR DELETE
    ON fee_items FOR EACH ROW EXECUTE FUNCTION catalogue_changed();

CREATE FUNCTION city_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_catalogue(NEW.code);
    RETURN NULL;
END;
$$;

CREATE TRIGGER city_added AFTER INSERT ON cities
    FOR EACH ROW EXECUTE FUNCTION city_added();

DO $$ BEGIN PERFORM refresh_catalogue(code) FROM cities; END $$;
