
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_REKEY_H_INCLUDED_
#define _NGX_SHINSEI_REKEY_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_rekey_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf);
void ngx_shinsei_rekey_exit_process(ngx_cycle_t *cycle);
ngx_uint_t ngx_shinsei_rekey_failures(void);


#endif /* _NGX_SHINSEI_REKEY_H_INCLUDED_ */
