-- Workers keep the data of the catalogue and procedure pages
-- (ngx_shinsei_citizen_catalogue.c); every change that rebuilds a city's
-- catalogue_docs row also tells them, in the same transaction, so the
-- notification arrives when the change is visible.  The payload is the
-- city; the workers empty their whole cache either way.
CREATE OR REPLACE FUNCTION refresh_catalogue(p_city text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO catalogue_docs (city, doc)
    SELECT p_city, catalogue_doc(p_city)
    WHERE EXISTS (SELECT 1 FROM cities WHERE code = p_city)
    ON CONFLICT (city) DO UPDATE SET doc = EXCLUDED.doc, updated_at = now();
    SELECT pg_notify('shinsei_catalogue', p_city);
$$;
