
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_DB_H_INCLUDED_
#define _NGX_SHINSEI_DB_H_INCLUDED_


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_pg.h"


/* done() also sees the queries the server refused (PGRES_FATAL_ERROR) */
#define NGX_SHINSEI_DB_SEE_ERRORS   0x01
/* done() also sees outages and timeouts, with a NULL result */
#define NGX_SHINSEI_DB_SEE_OUTAGES  0x02


typedef ngx_int_t (*ngx_shinsei_db_done_pt)(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);


ngx_int_t ngx_shinsei_db_query(ngx_http_request_t *r,
    ngx_shinsei_pg_stmt_t *stmt,
    ngx_str_t *params, ngx_uint_t nparams, ngx_shinsei_db_done_pt done,
    ngx_uint_t flags);
cJSON *ngx_shinsei_db_json(PGresult *res, int row, int col);
ngx_uint_t ngx_shinsei_db_error_is(PGresult *res, const char *sqlstate);
ngx_int_t ngx_shinsei_db_value(ngx_http_request_t *r, PGresult *res,
    int row, int col, ngx_str_t *out);
ngx_int_t ngx_shinsei_db_decrypt(ngx_http_request_t *r, PGresult *res,
    int row, int col, const char *aad, ngx_str_t *out);


#endif /* _NGX_SHINSEI_DB_H_INCLUDED_ */
