
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The catalogue of online procedures (/) and the page of one procedure
 * (/procedures/<code>): what it is, who may request it, its fees and
 * postage, what the resident needs.  Fees are data (fee_items), never
 * constants here.
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_tenant.h"


static ngx_int_t ngx_shinsei_catalogue(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_catalogue_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_procedure(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_procedure_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_uint_t ngx_shinsei_catalogue_code_valid(ngx_str_t *code);


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


static ngx_int_t
ngx_shinsei_catalogue(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_db_query(r, &ngx_shinsei_catalogue_stmt,
                                &ctx->tenant->code, 1,
                                ngx_shinsei_catalogue_loaded, 0);
}


static ngx_int_t
ngx_shinsei_catalogue_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    if (ngx_shinsei_db_view(r, ctx, res) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_render(r, ctx, "catalogue", NGX_HTTP_OK);
}


static ngx_int_t
ngx_shinsei_procedure(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  params[2];

    if (!ngx_shinsei_catalogue_code_valid(&ctx->params[0])) {
        return NGX_HTTP_NOT_FOUND;
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

    if (ngx_shinsei_db_view(r, ctx, res) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_render(r, ctx, "procedure", NGX_HTTP_OK);
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
