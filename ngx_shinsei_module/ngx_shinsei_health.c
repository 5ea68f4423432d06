
/*
 * Copyright (C) ngx_shinsei developers
 *
 * GET /healthz: whether this worker reaches the database, with its pool
 * figures, the session cache's, and the failed queries of its background
 * jobs, as JSON for load balancers and monitoring (REQ N-OPS-1,
 * N-SEC-4).  200 when the database answered, 503 when it did not.
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_pg.h"
#include "ngx_shinsei_purge.h"
#include "ngx_shinsei_rekey.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_session_cache.h"


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
    u_char                             *p, *last;
    ngx_str_t                           body, type;
    ngx_uint_t                          up;
    ngx_shinsei_pg_stats_t              st;
    ngx_shinsei_session_cache_stats_t   ss;

    up = res && PQresultStatus(res) == PGRES_TUPLES_OK;

    ngx_shinsei_pg_get_stats(&st);

    body.data = ngx_pnalloc(r->pool, 1024);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = body.data + 1024;

    p = ngx_slprintf(body.data, last,
                 "{\"status\":\"%s\",\"database\":\"%s\",\"pid\":%P,"
                 "\"listening\":%s,"
                 "\"pool\":{\"size\":%ui,\"open\":%ui,\"idle\":%ui,"
                 "\"busy\":%ui,\"connecting\":%ui,\"cancelling\":%ui,"
                 "\"waiting\":%ui},"
                 "\"counters\":{\"queries\":%ui,\"failed\":%ui,"
                 "\"unavailable\":%ui,\"timedout\":%ui,\"cancels\":%ui,"
                 "\"connects\":%ui,\"connect_failures\":%ui},"
                 "\"jobs\":{\"mail\":{\"failures\":%ui},"
                 "\"purge\":{\"failures\":%ui},"
                 "\"rekey\":{\"failures\":%ui}}",
                 up ? "ok" : "unavailable", up ? "up" : "down", ngx_pid,
                 ngx_shinsei_pg_listening() ? "true" : "false",
                 st.size, st.open, st.idle, st.busy, st.connecting,
                 st.cancelling, st.waiting, st.queries, st.failed,
                 st.unavailable, st.timedout, st.cancels, st.connects,
                 st.connect_failures, ngx_shinsei_mail_failures(),
                 ngx_shinsei_purge_failures(), ngx_shinsei_rekey_failures());

    if (ngx_shinsei_session_cache_get_stats(&ss) == NGX_OK) {
        p = ngx_slprintf(p, last,
                     ",\"sessions\":{\"serving\":%s,\"size\":%ui,"
                     "\"entries\":%ui,\"hits\":%ui,\"misses\":%ui,"
                     "\"forgotten\":%ui,\"flushes\":%ui}",
                     ss.serving ? "true" : "false", ss.size, ss.entries,
                     ss.hits, ss.misses, ss.forgotten, ss.flushes);
    }

    p = ngx_slprintf(p, last, "}\n");

    body.len = p - body.data;

    ngx_str_set(&type, "application/json");

    return ngx_shinsei_response_send(r, up ? NGX_HTTP_OK
                                           : NGX_HTTP_SERVICE_UNAVAILABLE,
                                              &type, &body);
}
