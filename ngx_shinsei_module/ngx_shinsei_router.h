
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_ROUTER_H_INCLUDED_
#define _NGX_SHINSEI_ROUTER_H_INCLUDED_


#include "ngx_shinsei_common.h"


#define NGX_SHINSEI_MAX_PARAMS       4

/* the page has forms: a session (and so a CSRF token) is made for it */
#define NGX_SHINSEI_ROUTE_SESSION    0x01
/* the page is for a logged-in user (the app's login_level) */
#define NGX_SHINSEI_ROUTE_LOGIN      0x02
/* no tenant, no session: health checks */
#define NGX_SHINSEI_ROUTE_BARE       0x04
/* a form that takes files (multipart parts with a filename) */
#define NGX_SHINSEI_ROUTE_FILES      0x08
/* a page a mailed link opens: its token never goes to another site */
#define NGX_SHINSEI_ROUTE_TOKEN      0x10


struct ngx_shinsei_route_s {
    ngx_uint_t                 methods;
    ngx_str_t                  path;
    ngx_shinsei_handler_pt     handler;
    ngx_uint_t                 flags;
    /* shows the form again, with what was typed, when a POST is refused */
    ngx_shinsei_handler_pt     form;
};


#define ngx_shinsei_null_route   { 0, ngx_null_string, NULL, 0, NULL }


ngx_int_t ngx_shinsei_router_find(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_route_t **tables);


#endif /* _NGX_SHINSEI_ROUTER_H_INCLUDED_ */
