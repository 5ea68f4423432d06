
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_CITIZEN_CATALOGUE_H_INCLUDED_
#define _NGX_SHINSEI_CITIZEN_CATALOGUE_H_INCLUDED_


#include "ngx_shinsei_common.h"


ngx_int_t ngx_shinsei_catalogue_init_process(ngx_cycle_t *cycle);
void ngx_shinsei_catalogue_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_SHINSEI_CITIZEN_CATALOGUE_H_INCLUDED_ */
