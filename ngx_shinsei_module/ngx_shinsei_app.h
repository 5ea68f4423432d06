
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_APP_H_INCLUDED_
#define _NGX_SHINSEI_APP_H_INCLUDED_


#include "ngx_shinsei_common.h"


/* the kinds of session, as sessions.kind names them */
#define NGX_SHINSEI_KIND_NONE       0
#define NGX_SHINSEI_KIND_CITIZEN    1


ngx_shinsei_app_t *ngx_shinsei_app_find(ngx_str_t *name);
ngx_shinsei_app_t **ngx_shinsei_app_all(void);


#endif /* _NGX_SHINSEI_APP_H_INCLUDED_ */
