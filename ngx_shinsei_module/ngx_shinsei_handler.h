
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_HANDLER_H_INCLUDED_
#define _NGX_SHINSEI_HANDLER_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_handler(ngx_http_request_t *r);
ngx_int_t ngx_shinsei_handler_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);


#endif /* _NGX_SHINSEI_HANDLER_H_INCLUDED_ */
