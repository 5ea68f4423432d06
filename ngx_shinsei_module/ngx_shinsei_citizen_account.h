
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_CITIZEN_ACCOUNT_H_INCLUDED_
#define _NGX_SHINSEI_CITIZEN_ACCOUNT_H_INCLUDED_


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_form.h"
#include <libpq-fe.h>


cJSON *ngx_shinsei_account_vars(ngx_http_request_t *r, ngx_str_t *name,
    const char *path, ngx_str_t *token);
ngx_str_t *ngx_shinsei_account_token(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_account_token_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *page, const char *state,
    ngx_shinsei_field_def_t *defs);


#endif /* _NGX_SHINSEI_CITIZEN_ACCOUNT_H_INCLUDED_ */
