
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_RESPONSE_H_INCLUDED_
#define _NGX_SHINSEI_RESPONSE_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_response_init(ngx_conf_t *cf);

cJSON *ngx_shinsei_response_view(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_response_view_json(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, cJSON *json);
ngx_int_t ngx_shinsei_response_view_text(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *text);
ngx_int_t ngx_shinsei_response_render(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *name, ngx_uint_t status);
ngx_int_t ngx_shinsei_response_redirect(ngx_http_request_t *r,
    ngx_str_t *location);
ngx_int_t ngx_shinsei_response_redirect_to(ngx_http_request_t *r,
    const char *location);
ngx_int_t ngx_shinsei_response_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_str_t *body);
ngx_int_t ngx_shinsei_response_error(ngx_http_request_t *r,
    ngx_uint_t status);
ngx_int_t ngx_shinsei_response_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);


#endif /* _NGX_SHINSEI_RESPONSE_H_INCLUDED_ */
