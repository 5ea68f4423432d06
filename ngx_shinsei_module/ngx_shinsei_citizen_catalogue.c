
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The catalogue of online procedures (/) and the page of one procedure
 * (/procedures/<code>): what it is, who may request it, its fees and
 * postage, what the resident needs.  Fees are data (fee_items), never
 * constants here.
 *
 * These are the most visited pages and change only when staff change the
 * procedures, so each worker keeps the JSON of each page's data (not the
 * page: that has the resident's session) and asks the database again only
 * after a change.  The triggers that keep catalogue_docs NOTIFY
 * shinsei_catalogue in the changing transaction (sql/007); a notification
 * empties every worker's cache.  While the LISTEN connection is down,
 * notifications can be lost, so nothing is taken from or put in the
 * cache then; when it is back, the cache starts empty.  A result is kept
 * only if no notification came between its query and its answer.  And a
 * page is kept a minute at most: should the LISTEN connection die without
 * the worker noticing (a firewall dropping it silently) or notifications
 * never come (a pooler in transaction mode), a change still shows within
 * the minute.
 */


#include "ngx_shinsei_citizen_catalogue.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_pg.h"


#define NGX_SHINSEI_CATALOGUE_CACHE  256      /* pages kept, at most */
#define NGX_SHINSEI_CATALOGUE_TTL    60000    /* ms a page is kept */


typedef struct {
    ngx_str_t                  city;
    ngx_str_t                  code;          /* empty: the catalogue */
    ngx_str_t                  json;
    ngx_msec_t                 kept;          /* when */
} ngx_shinsei_catalogue_page_t;


typedef struct {
    ngx_uint_t                    gen;        /* notifications seen */
    ngx_uint_t                    npages;
    ngx_shinsei_catalogue_page_t  pages[NGX_SHINSEI_CATALOGUE_CACHE];
} ngx_shinsei_catalogue_cache_t;


static ngx_int_t ngx_shinsei_catalogue(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_catalogue_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_procedure(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_procedure_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_catalogue_note_gen(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_uint_t ngx_shinsei_catalogue_code_valid(ngx_str_t *code);
static ngx_str_t *ngx_shinsei_catalogue_cached(ngx_str_t *city,
    ngx_str_t *code);
static void ngx_shinsei_catalogue_keep(ngx_shinsei_ctx_t *ctx,
    ngx_str_t *city, ngx_str_t *code, PGresult *res);
static void ngx_shinsei_catalogue_changed(ngx_str_t *channel,
    ngx_str_t *payload, void *data);
static void ngx_shinsei_catalogue_drop(ngx_uint_t i);
static void ngx_shinsei_catalogue_empty(void);


static ngx_shinsei_catalogue_cache_t  *ngx_shinsei_catalogue_cache;

/* the catalogue's code in the cache: empty, but never a NULL pointer */
static ngx_str_t  ngx_shinsei_catalogue_none = ngx_string("");


ngx_shinsei_route_t  ngx_shinsei_catalogue_routes[] = {

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/"),
      ngx_shinsei_catalogue, 0, NULL },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/procedures/:code"),
      ngx_shinsei_procedure, 0, NULL },

    ngx_shinsei_null_route
};


/* the whole page as one JSON document kept ready (catalogue_docs) */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_catalogue_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT coalesce((SELECT doc FROM catalogue_docs WHERE city = $1),"
    " '{\"groups\":[]}')");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_procedure_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT json_build_object('procedure', json_build_object("
    "  'code', p.code, 'name', p.name, 'summary', p.summary,"
    "  'description', p.description, 'eligibility', p.eligibility,"
    "  'requirements', p.requirements, 'delivery', p.delivery,"
    "  'group_name', g.name),"
    " 'fees', (SELECT json_agg(json_build_object('label', f.label,"
    "   'amount', to_char(f.amount, 'FM999,999,990'),"
    "   'per_copy', f.per_copy) ORDER BY f.sort)"
    "  FROM fee_items f WHERE f.city = p.city AND f.procedure_id = p.id"
    "  AND f.kind = 'fee'),"
    " 'postage', (SELECT json_agg(json_build_object('label', f.label,"
    "   'amount', to_char(f.amount, 'FM999,999,990')) ORDER BY f.sort)"
    "  FROM fee_items f WHERE f.city = p.city AND f.procedure_id = p.id"
    "  AND f.kind = 'postage'))"
    " FROM procedures p"
    " JOIN procedure_groups g ON g.city = p.city AND g.code = p.group_code"
    " WHERE p.city = $1 AND p.code = $2 AND p.published");


ngx_int_t
ngx_shinsei_catalogue_init_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_catalogue_cache = ngx_pcalloc(cycle->pool,
                                      sizeof(ngx_shinsei_catalogue_cache_t));
    if (ngx_shinsei_catalogue_cache == NULL) {
        return NGX_ERROR;
    }

    return ngx_shinsei_pg_listen(cycle, "shinsei_catalogue",
                                 ngx_shinsei_catalogue_changed, NULL);
}


void
ngx_shinsei_catalogue_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_shinsei_catalogue_cache) {
        ngx_shinsei_catalogue_empty();
        ngx_shinsei_catalogue_cache = NULL;
    }
}


static ngx_int_t
ngx_shinsei_catalogue(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  *json;

    json = ngx_shinsei_catalogue_cached(&ctx->tenant->code,
                                        &ngx_shinsei_catalogue_none);

    if (json) {
        if (ngx_shinsei_response_view_text(r, ctx, json) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_shinsei_response_render(r, ctx, "catalogue", NGX_HTTP_OK);
    }

    if (ngx_shinsei_catalogue_note_gen(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_catalogue_stmt,
                                &ctx->tenant->code, 1,
                                ngx_shinsei_catalogue_loaded, 0);
}


static ngx_int_t
ngx_shinsei_catalogue_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    if (ngx_shinsei_response_view_json(r, ctx, ngx_shinsei_db_json(res, 0, 0))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_shinsei_catalogue_keep(ctx, &ctx->tenant->code,
                               &ngx_shinsei_catalogue_none, res);

    return ngx_shinsei_response_render(r, ctx, "catalogue", NGX_HTTP_OK);
}


static ngx_int_t
ngx_shinsei_procedure(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  params[2], *json;

    if (!ngx_shinsei_catalogue_code_valid(&ctx->params[0])) {
        return NGX_HTTP_NOT_FOUND;
    }

    json = ngx_shinsei_catalogue_cached(&ctx->tenant->code, &ctx->params[0]);

    if (json) {
        if (ngx_shinsei_response_view_text(r, ctx, json) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_shinsei_response_render(r, ctx, "procedure", NGX_HTTP_OK);
    }

    if (ngx_shinsei_catalogue_note_gen(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = ctx->tenant->code;
    params[1] = ctx->params[0];

    return ngx_shinsei_db_query(r, &ngx_shinsei_procedure_stmt, params, 2,
                                ngx_shinsei_procedure_loaded, 0);
}


static ngx_int_t
ngx_shinsei_procedure_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    if (PQntuples(res) == 0) {
        return NGX_HTTP_NOT_FOUND;
    }

    if (ngx_shinsei_response_view_json(r, ctx, ngx_shinsei_db_json(res, 0, 0))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_shinsei_catalogue_keep(ctx, &ctx->tenant->code, &ctx->params[0], res);

    return ngx_shinsei_response_render(r, ctx, "procedure", NGX_HTTP_OK);
}


/* the notifications seen before the query (ctx->data), for keep() */

static ngx_int_t
ngx_shinsei_catalogue_note_gen(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_uint_t  *gen;

    gen = ngx_palloc(r->pool, sizeof(ngx_uint_t));
    if (gen == NULL) {
        return NGX_ERROR;
    }

    *gen = ngx_shinsei_catalogue_cache->gen;
    ctx->data = gen;

    return NGX_OK;
}


static ngx_uint_t
ngx_shinsei_catalogue_code_valid(ngx_str_t *code)
{
    u_char  *p;

    if (code->len == 0 || code->len > 32) {
        return 0;
    }

    for (p = code->data; p < code->data + code->len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '-' || *p == '_'))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_str_t *
ngx_shinsei_catalogue_cached(ngx_str_t *city, ngx_str_t *code)
{
    ngx_uint_t                     i;
    ngx_shinsei_catalogue_page_t  *page;

    if (!ngx_shinsei_pg_listening()) {
        return NULL;
    }

    page = ngx_shinsei_catalogue_cache->pages;

    for (i = 0; i < ngx_shinsei_catalogue_cache->npages; i++) {
        if (page[i].city.len == city->len
            && page[i].code.len == code->len
            && ngx_strncmp(page[i].city.data, city->data, city->len) == 0
            && ngx_strncmp(page[i].code.data, code->data, code->len) == 0)
        {
            if ((ngx_msec_int_t) (ngx_current_msec - page[i].kept)
                >= NGX_SHINSEI_CATALOGUE_TTL)
            {
                /* too old: the answer to this query takes its place */
                ngx_shinsei_catalogue_drop(i);
                return NULL;
            }

            return &page[i].json;
        }
    }

    return NULL;
}


/*
 * keeps the JSON of a page's data (an object: the view took it), if
 * nothing changed since its query
 */

static void
ngx_shinsei_catalogue_keep(ngx_shinsei_ctx_t *ctx, ngx_str_t *city,
    ngx_str_t *code, PGresult *res)
{
    u_char                         *p;
    size_t                          len;
    ngx_shinsei_catalogue_page_t   *page;
    ngx_shinsei_catalogue_cache_t  *cache;

    cache = ngx_shinsei_catalogue_cache;

    if (*(ngx_uint_t *) ctx->data != cache->gen
        || !ngx_shinsei_pg_listening()
        || cache->npages == NGX_SHINSEI_CATALOGUE_CACHE
        || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)
        || ngx_shinsei_catalogue_cached(city, code))
    {
        return;
    }

    len = PQgetlength(res, 0, 0);

    /*
     * one allocation: the city, the code, the JSON; malloc() rather than
     * ngx_alloc(), so that a leak shows this module's frames to the ASan
     * build's leak check (t/lib/lsan.supp)
     */

    p = malloc(city->len + code->len + len);
    if (p == NULL) {
        return;
    }

    page = &cache->pages[cache->npages++];

    page->city.data = p;
    page->city.len = city->len;
    p = ngx_cpymem(p, city->data, city->len);

    page->code.data = p;
    page->code.len = code->len;
    p = ngx_cpymem(p, code->data, code->len);

    page->json.data = p;
    page->json.len = len;
    ngx_memcpy(p, PQgetvalue(res, 0, 0), len);

    page->kept = ngx_current_msec;
}


static void
ngx_shinsei_catalogue_drop(ngx_uint_t i)
{
    ngx_shinsei_catalogue_cache_t  *cache;

    cache = ngx_shinsei_catalogue_cache;

    free(cache->pages[i].city.data);
    cache->pages[i] = cache->pages[--cache->npages];
}


static void
ngx_shinsei_catalogue_changed(ngx_str_t *channel, ngx_str_t *payload,
    void *data)
{
    if (ngx_shinsei_catalogue_cache == NULL) {
        return;
    }

    /* a change, or the LISTEN connection back (payload NULL) */

    ngx_shinsei_catalogue_cache->gen++;
    ngx_shinsei_catalogue_empty();
}


static void
ngx_shinsei_catalogue_empty(void)
{
    ngx_uint_t                      i;
    ngx_shinsei_catalogue_cache_t  *cache;

    cache = ngx_shinsei_catalogue_cache;

    for (i = 0; i < cache->npages; i++) {
        free(cache->pages[i].city.data);
    }

    cache->npages = 0;
}
