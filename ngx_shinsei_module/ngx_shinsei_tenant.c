
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The city a server {} serves (shinsei_tenant): its row of the cities
 * table, kept by each worker for a minute so every page can show the
 * city's name and contacts without a query of its own, and so the error
 * pages can show them even while the database is away.
 */


#include "ngx_shinsei_tenant.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_pg.h"
#include "ngx_shinsei_router.h"


#define NGX_SHINSEI_TENANT_TTL      60000
#define NGX_SHINSEI_TENANT_RETRY    5000


static ngx_int_t ngx_shinsei_tenant_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static void ngx_shinsei_tenant_preloaded(ngx_shinsei_pg_query_t *q);


static ngx_shinsei_pg_stmt_t  ngx_shinsei_tenant_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT json_build_object('code', code, 'name', name,"
    " 'name_kana', name_kana, 'prefecture', prefecture,"
    " 'contact', contact)"
    " FROM cities WHERE code = $1");


/*
 * The city step.  For a page the city is needed; for an error page it
 * is welcome (the page shows its name and contacts), and its failure to
 * load does not change the error.
 */

ngx_int_t
ngx_shinsei_tenant_step(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_shinsei_tenant_t    *t;
    ngx_shinsei_srv_conf_t  *sscf;

    if (ctx->route && (ctx->route->flags & NGX_SHINSEI_ROUTE_BARE)) {
        return NGX_DECLINED;
    }

    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);
    t = sscf->cache;

    ctx->tenant = t;

    if (t->city
        && (ngx_msec_int_t) (ngx_current_msec - t->loaded)
           < NGX_SHINSEI_TENANT_TTL)
    {
        return NGX_DECLINED;
    }

    if (t->city) {
        /* stale: this request refreshes it, the others use it meanwhile */
        t->loaded = ngx_current_msec - NGX_SHINSEI_TENANT_TTL
                    + NGX_SHINSEI_TENANT_RETRY;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_tenant_stmt, &t->code, 1,
                                ngx_shinsei_tenant_loaded,
                                ctx->route ? 0
                                : NGX_SHINSEI_DB_SEE_ERRORS
                                  |NGX_SHINSEI_DB_SEE_OUTAGES);
}


/*
 * A new worker asks for its cities at once, so that even its first
 * answer, an error page say, shows the city's name and contacts.
 */

ngx_int_t
ngx_shinsei_tenant_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf)
{
    ngx_uint_t               i;
    ngx_shinsei_tenant_t   **t;
    ngx_shinsei_pg_query_t  *q;

    t = smcf->tenants.elts;

    for (i = 0; i < smcf->tenants.nelts; i++) {

        q = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_pg_query_t));
        if (q == NULL) {
            return NGX_ERROR;
        }

        q->values = ngx_palloc(cycle->pool, sizeof(char *));
        if (q->values == NULL) {
            return NGX_ERROR;
        }

        /* the code is a configuration argument: NUL-terminated */
        q->values[0] = (char *) t[i]->code.data;

        q->stmt = &ngx_shinsei_tenant_stmt;
        q->nparams = 1;
        q->done = ngx_shinsei_tenant_preloaded;
        q->data = t[i];
        q->log = cycle->log;

        ngx_shinsei_pg_send(q);
    }

    return NGX_OK;
}


void
ngx_shinsei_tenant_exit_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf)
{
    ngx_uint_t              i;
    ngx_shinsei_tenant_t  **t;

    t = smcf->tenants.elts;

    for (i = 0; i < smcf->tenants.nelts; i++) {
        cJSON_Delete(t[i]->city);
        t[i]->city = NULL;
    }
}


static void
ngx_shinsei_tenant_preloaded(ngx_shinsei_pg_query_t *q)
{
    cJSON                 *city;
    ngx_shinsei_tenant_t  *t;

    t = q->data;

    if (q->status != NGX_SHINSEI_PG_OK || t->city) {
        /* the first page that needs the city asks again */
        return;
    }

    city = ngx_shinsei_db_json(q->result, 0, 0);

    if (city) {
        t->city = city;
        t->loaded = ngx_current_msec;
    }
}


static ngx_int_t
ngx_shinsei_tenant_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    cJSON                 *city;
    ngx_shinsei_tenant_t  *t;

    t = ctx->tenant;

    city = ngx_shinsei_db_json(res, 0, 0);

    if (city == NULL && ctx->route == NULL) {
        return NGX_DECLINED;
    }

    if (city == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "tenant \"%V\" is not in "
                      "the cities table", &t->code);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_Delete(t->city);
    t->city = city;
    t->loaded = ngx_current_msec;

    return NGX_DECLINED;
}
