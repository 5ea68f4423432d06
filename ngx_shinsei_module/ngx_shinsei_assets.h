
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_ASSETS_H_INCLUDED_
#define _NGX_SHINSEI_ASSETS_H_INCLUDED_


#include "ngx_shinsei_common.h"


char *ngx_shinsei_assets_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_str_t *ngx_shinsei_assets_url(ngx_shinsei_assets_t *assets,
    ngx_str_t *path);


#endif /* _NGX_SHINSEI_ASSETS_H_INCLUDED_ */
