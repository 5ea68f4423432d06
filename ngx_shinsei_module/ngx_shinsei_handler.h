
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_HANDLER_H_INCLUDED_
#define _NGX_SHINSEI_HANDLER_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_handler(ngx_http_request_t *r);
ngx_int_t ngx_shinsei_continue(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
void ngx_shinsei_finish(ngx_http_request_t *r, ngx_int_t rc);

cJSON *ngx_shinsei_view(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_render(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *name, ngx_uint_t status);
ngx_int_t ngx_shinsei_redirect(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *location);
ngx_int_t ngx_shinsei_redirect_to(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *location);
ngx_int_t ngx_shinsei_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *body);
ngx_int_t ngx_shinsei_error_page(ngx_http_request_t *r, ngx_uint_t status);
ngx_int_t ngx_shinsei_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value);


#endif /* _NGX_SHINSEI_HANDLER_H_INCLUDED_ */
