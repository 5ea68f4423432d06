
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_REQUEST_H_INCLUDED_
#define _NGX_SHINSEI_REQUEST_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_request_add_variables(ngx_conf_t *cf);
ngx_shinsei_ctx_t *ngx_shinsei_request_ctx(ngx_http_request_t *r);
void ngx_shinsei_request_start(ngx_http_request_t *r,
    ngx_http_event_handler_pt run);
void ngx_shinsei_request_suspend(ngx_http_request_t *r,
    ngx_shinsei_resume_pt resume, void *data);
ngx_int_t ngx_shinsei_request_resume(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
void ngx_shinsei_request_wake(ngx_http_request_t *r);
ngx_str_t *ngx_shinsei_request_header(ngx_http_request_t *r,
    const char *name);
void ngx_shinsei_request_end(ngx_http_request_t *r, ngx_int_t rc);


#endif /* _NGX_SHINSEI_REQUEST_H_INCLUDED_ */
