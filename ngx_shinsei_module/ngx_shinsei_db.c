
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Queries on behalf of an HTTP request: the request waits (suspended, the
 * worker free) while its query runs on the pool, and is woken through
 * ngx_shinsei_request.c; the result comes to the page's done() with the
 * request's log restored.  A database that cannot be reached gives the
 * 503 page, a query over its timeout the 504 page, a refused query the
 * 500 page; each is logged here once.
 */


#include "ngx_shinsei_db.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_request.h"


typedef struct {
    ngx_shinsei_pg_query_t     query;
    ngx_http_request_t        *request;
    ngx_shinsei_db_done_pt     done;
    ngx_uint_t                 flags;
    unsigned                   pending:1;
} ngx_shinsei_db_query_t;


static void ngx_shinsei_db_done(ngx_shinsei_pg_query_t *q);
static ngx_int_t ngx_shinsei_db_resume(ngx_http_request_t *r, void *data);
static void ngx_shinsei_db_cleanup(void *data);


ngx_int_t
ngx_shinsei_db_query(ngx_http_request_t *r, ngx_shinsei_pg_stmt_t *stmt,
    ngx_str_t *params, ngx_uint_t nparams, ngx_shinsei_db_done_pt done,
    ngx_uint_t flags)
{
    u_char                  *p;
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_shinsei_db_query_t  *dq;

    dq = ngx_pcalloc(r->pool, sizeof(ngx_shinsei_db_query_t));
    if (dq == NULL) {
        return NGX_ERROR;
    }

    if (nparams) {
        dq->query.values = ngx_palloc(r->pool, nparams * sizeof(char *));
        if (dq->query.values == NULL) {
            return NGX_ERROR;
        }

        /* text parameters go to libpq as NUL-terminated strings */

        for (i = 0; i < nparams; i++) {
            if (params[i].data == NULL) {
                dq->query.values[i] = NULL;
                continue;
            }

            p = ngx_pnalloc(r->pool, params[i].len + 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            *ngx_cpymem(p, params[i].data, params[i].len) = '\0';
            dq->query.values[i] = (char *) p;
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_shinsei_db_cleanup;
    cln->data = dq;

    dq->query.stmt = stmt;
    dq->query.nparams = (int) nparams;
    dq->query.done = ngx_shinsei_db_done;
    dq->query.data = dq;
    dq->query.log = r->connection->log;
    dq->request = r;
    dq->done = done;
    dq->flags = flags;
    dq->pending = 1;

    ngx_shinsei_request_suspend(r, ngx_shinsei_db_resume, dq);

    ngx_shinsei_pg_send(&dq->query);

    return NGX_DONE;
}


cJSON *
ngx_shinsei_db_json(PGresult *res, int row, int col)
{
    if (res == NULL
        || PQresultStatus(res) != PGRES_TUPLES_OK
        || row >= PQntuples(res) || col >= PQnfields(res)
        || PQgetisnull(res, row, col))
    {
        return NULL;
    }

    return cJSON_ParseWithLength(PQgetvalue(res, row, col),
                                 PQgetlength(res, row, col));
}


ngx_uint_t
ngx_shinsei_db_error_is(PGresult *res, const char *sqlstate)
{
    char  *state;

    if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR) {
        return 0;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state && ngx_strcmp(state, sqlstate) == 0;
}


/* a copy in the request pool: results do not outlive done() */

ngx_int_t
ngx_shinsei_db_value(ngx_http_request_t *r, PGresult *res, int row, int col,
    ngx_str_t *out)
{
    if (row >= PQntuples(res) || col >= PQnfields(res)
        || PQgetisnull(res, row, col))
    {
        ngx_str_null(out);
        return NGX_DECLINED;
    }

    out->len = PQgetlength(res, row, col);
    out->data = ngx_pnalloc(r->pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, PQgetvalue(res, row, col), out->len);
    out->data[out->len] = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_db_decrypt(ngx_http_request_t *r, PGresult *res, int row,
    int col, const char *aad, ngx_str_t *out)
{
    ngx_str_t  enc;

    if (row >= PQntuples(res) || col >= PQnfields(res)
        || PQgetisnull(res, row, col))
    {
        ngx_str_null(out);
        return NGX_DECLINED;
    }

    enc.data = (u_char *) PQgetvalue(res, row, col);
    enc.len = PQgetlength(res, row, col);

    if (ngx_shinsei_crypto_decrypt(r->pool, &enc, aad, out) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "cannot decrypt a \"%s\" "
                      "value: wrong or missing data key, or not this row's "
                      "value", aad);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the query ended: the page goes on while its result is valid */

static void
ngx_shinsei_db_done(ngx_shinsei_pg_query_t *q)
{
    ngx_shinsei_db_query_t  *dq;

    dq = q->data;
    dq->pending = 0;

    ngx_shinsei_request_wake(dq->request);
}


static ngx_int_t
ngx_shinsei_db_resume(ngx_http_request_t *r, void *data)
{
    ngx_shinsei_db_query_t *dq = data;

    char                    *state, *msg;
    ngx_shinsei_ctx_t       *ctx;
    ngx_shinsei_pg_query_t  *q;

    q = &dq->query;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    switch (q->status) {

    case NGX_SHINSEI_PG_OK:
        return dq->done(r, ctx, q->result);

    case NGX_SHINSEI_PG_FAILED:
        if (dq->flags & NGX_SHINSEI_DB_SEE_ERRORS) {
            return dq->done(r, ctx, q->result);
        }

        /* the primary message only: the detail may quote personal data */

        state = PQresultErrorField(q->result, PG_DIAG_SQLSTATE);
        msg = PQresultErrorField(q->result, PG_DIAG_MESSAGE_PRIMARY);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "query failed: %s (SQLSTATE %s)",
                      msg ? msg : "?", state ? state : "?");

        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_SHINSEI_PG_TIMEDOUT:
        if (dq->flags & NGX_SHINSEI_DB_SEE_OUTAGES) {
            return dq->done(r, ctx, NULL);
        }

        return NGX_HTTP_GATEWAY_TIME_OUT;

    default:
        if (dq->flags & NGX_SHINSEI_DB_SEE_OUTAGES) {
            return dq->done(r, ctx, NULL);
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "database unavailable");

        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }
}


static void
ngx_shinsei_db_cleanup(void *data)
{
    ngx_shinsei_db_query_t  *dq = data;

    if (dq->pending) {
        dq->pending = 0;
        ngx_shinsei_pg_cancel(&dq->query);
    }
}
