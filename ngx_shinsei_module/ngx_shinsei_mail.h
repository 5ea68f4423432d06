
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_MAIL_H_INCLUDED_
#define _NGX_SHINSEI_MAIL_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_mail_build(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *template, ngx_str_t *to,
    cJSON *vars, ngx_str_t *json);
ngx_int_t ngx_shinsei_mail_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf);
void ngx_shinsei_mail_exit_process(ngx_cycle_t *cycle);
ngx_uint_t ngx_shinsei_mail_failures(void);


#endif /* _NGX_SHINSEI_MAIL_H_INCLUDED_ */
