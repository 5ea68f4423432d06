
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_BODY_H_INCLUDED_
#define _NGX_SHINSEI_BODY_H_INCLUDED_


#include "ngx_shinsei_common.h"


#define NGX_SHINSEI_MAX_FIELDS      256
#define NGX_SHINSEI_MAX_NAME        128


ngx_int_t ngx_shinsei_body_parse(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_str_t *ngx_shinsei_body_field(ngx_array_t *fields, const char *name);


#endif /* _NGX_SHINSEI_BODY_H_INCLUDED_ */
