
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
#include "ngx_shinsei_handler.h"


#define NGX_SHINSEI_TENANT_TTL      60000
#define NGX_SHINSEI_TENANT_RETRY    5000


static ngx_int_t ngx_shinsei_tenant_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);


static ngx_shinsei_pg_stmt_t  ngx_shinsei_tenant_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT json_build_object('code', code, 'name', name,"
    " 'name_kana', name_kana, 'prefecture', prefecture,"
    " 'contact', contact)"
    " FROM cities WHERE code = $1");


ngx_int_t
ngx_shinsei_tenant_load(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_shinsei_tenant_t    *t;
    ngx_shinsei_srv_conf_t  *sscf;

    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);
    t = sscf->cache;

    ctx->tenant = t;

    if (t->city
        && (ngx_msec_int_t) (ngx_current_msec - t->loaded)
           < NGX_SHINSEI_TENANT_TTL)
    {
        ctx->tenant_done = 1;
        return NGX_OK;
    }

    if (t->city) {
        /* stale: this request refreshes it, the others use it meanwhile */
        t->loaded = ngx_current_msec - NGX_SHINSEI_TENANT_TTL
                    + NGX_SHINSEI_TENANT_RETRY;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_tenant_stmt, &t->code, 1,
                                ngx_shinsei_tenant_loaded, 0);
}


cJSON *
ngx_shinsei_tenant_city(ngx_http_request_t *r)
{
    ngx_shinsei_srv_conf_t  *sscf;

    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);

    if (sscf == NULL || sscf->cache == NULL) {
        return NULL;
    }

    return sscf->cache->city;
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


static ngx_int_t
ngx_shinsei_tenant_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    cJSON                 *city;
    ngx_shinsei_tenant_t  *t;

    t = ctx->tenant;

    city = ngx_shinsei_db_json(res, 0, 0);

    if (city == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "tenant \"%V\" is not in "
                      "the cities table", &t->code);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_Delete(t->city);
    t->city = city;
    t->loaded = ngx_current_msec;

    ctx->tenant_done = 1;

    return ngx_shinsei_continue(r, ctx);
}
