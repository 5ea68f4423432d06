
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_TMPL_H_INCLUDED_
#define _NGX_SHINSEI_TMPL_H_INCLUDED_


#include "ngx_shinsei_common.h"


typedef struct ngx_shinsei_tmpl_s  ngx_shinsei_tmpl_t;


ngx_shinsei_tmpl_set_t *ngx_shinsei_tmpl_load(ngx_conf_t *cf,
    ngx_str_t *dir, ngx_shinsei_assets_t *assets);
ngx_shinsei_tmpl_t *ngx_shinsei_tmpl_find(ngx_shinsei_tmpl_set_t *set,
    ngx_str_t *name);
ngx_int_t ngx_shinsei_tmpl_render(ngx_shinsei_tmpl_t *t, cJSON *data,
    ngx_pool_t *pool, ngx_chain_t **out, off_t *size);
ngx_int_t ngx_shinsei_tmpl_render_str(ngx_shinsei_tmpl_t *t, cJSON *data,
    ngx_pool_t *pool, ngx_str_t *out);


#endif /* _NGX_SHINSEI_TMPL_H_INCLUDED_ */
