
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_SESSION_H_INCLUDED_
#define _NGX_SHINSEI_SESSION_H_INCLUDED_


#include "ngx_shinsei_common.h"


#define NGX_SHINSEI_SESSION_ID_LEN   43      /* base64url of 32 bytes */


ngx_int_t ngx_shinsei_session_load(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_uint_t ngx_shinsei_session_csrf_ok(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_session_view(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, cJSON *site);
ngx_int_t ngx_shinsei_session_cookie(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_session_rotate(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *old, ngx_str_t *fresh);
ngx_int_t ngx_shinsei_session_end(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *hash);


#endif /* _NGX_SHINSEI_SESSION_H_INCLUDED_ */
