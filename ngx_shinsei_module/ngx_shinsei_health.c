
/*
 * Copyright (C) ngx_shinsei developers
 *
 * GET /healthz: whether this worker reaches the database, with its pool
 * figures, as JSON for load balancers and monitoring (REQ N-OPS-1,
 * N-SEC-4).  200 when the database answered, 503 when it did not.
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_pg.h"
#include "ngx_shinsei_router.h"


static ngx_int_t ngx_shinsei_health(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_health_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);


ngx_shinsei_route_t  ngx_shinsei_health_routes[] = {

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/healthz"),
      ngx_shinsei_health, NGX_SHINSEI_ROUTE_BARE, NULL },

    ngx_shinsei_null_route
};


static ngx_shinsei_pg_stmt_t  ngx_shinsei_health_stmt =
    ngx_shinsei_pg_stmt("SELECT 1");


static ngx_int_t
ngx_shinsei_health(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_db_query(r, &ngx_shinsei_health_stmt, NULL, 0,
                                ngx_shinsei_health_done,
                                NGX_SHINSEI_DB_SEE_ERRORS
                                |NGX_SHINSEI_DB_SEE_OUTAGES);
}


static ngx_int_t
ngx_shinsei_health_done(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    ngx_str_t               body, type;
    ngx_uint_t              up;
    ngx_shinsei_pg_stats_t  st;

    up = res && PQresultStatus(res) == PGRES_TUPLES_OK;

    ngx_shinsei_pg_get_stats(&st);

    body.data = ngx_pnalloc(r->pool, 512);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.len = ngx_snprintf(body.data, 512,
                   "{\"status\":\"%s\",\"database\":\"%s\",\"pid\":%P,"
                   "\"pool\":{\"size\":%ui,\"open\":%ui,\"idle\":%ui,"
                   "\"busy\":%ui,\"connecting\":%ui,\"waiting\":%ui},"
                   "\"counters\":{\"queries\":%ui,\"failed\":%ui,"
                   "\"unavailable\":%ui,\"timedout\":%ui,\"connects\":%ui,"
                   "\"connect_failures\":%ui}}\n",
                   up ? "ok" : "unavailable", up ? "up" : "down", ngx_pid,
                   st.size, st.open, st.idle, st.busy, st.connecting,
                   st.waiting, st.queries, st.failed, st.unavailable,
                   st.timedout, st.connects, st.connect_failures)
               - body.data;

    ngx_str_set(&type, "application/json");

    return ngx_shinsei_send(r, up ? NGX_HTTP_OK
                                  : NGX_HTTP_SERVICE_UNAVAILABLE,
                            &type, &body);
}
