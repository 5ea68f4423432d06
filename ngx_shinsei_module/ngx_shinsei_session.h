
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_SESSION_H_INCLUDED_
#define _NGX_SHINSEI_SESSION_H_INCLUDED_


#include "ngx_shinsei_common.h"
#include <libpq-fe.h>


#define NGX_SHINSEI_SESSION_ID_LEN   43      /* base64url of 32 bytes */


ngx_int_t ngx_shinsei_session_init(ngx_conf_t *cf);

ngx_int_t ngx_shinsei_session_step(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_session_login_step(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_session_csrf_step(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);

ngx_int_t ngx_shinsei_session_profile(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *key, const char *column,
    ngx_str_t *out);
ngx_int_t ngx_shinsei_session_id_hash(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *hex);
ngx_int_t ngx_shinsei_session_rotate(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *old, ngx_str_t *fresh);
ngx_int_t ngx_shinsei_session_end(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *hash);
void ngx_shinsei_session_forget(PGresult *res, int row, int col);


#endif /* _NGX_SHINSEI_SESSION_H_INCLUDED_ */
