
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_TENANT_H_INCLUDED_
#define _NGX_SHINSEI_TENANT_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_tenant_step(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_tenant_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf);
void ngx_shinsei_tenant_exit_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf);


#endif /* _NGX_SHINSEI_TENANT_H_INCLUDED_ */
