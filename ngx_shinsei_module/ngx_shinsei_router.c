
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Method + path -> handler.  Each feature file exports a table of routes;
 * an application (ngx_shinsei_app.c) is the list of its tables.  Path
 * patterns are literal segments and ":name" segments, which match one
 * non-empty segment and are handed to the handler in order.
 */


#include "ngx_shinsei_router.h"


static ngx_uint_t ngx_shinsei_router_match(ngx_http_request_t *r,
    ngx_str_t *pattern, ngx_str_t *params, ngx_uint_t *nparams);


ngx_int_t
ngx_shinsei_router_find(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_route_t **tables)
{
    ngx_str_t             params[NGX_SHINSEI_MAX_PARAMS];
    ngx_uint_t            i, n, path_found;
    ngx_shinsei_route_t  *rt;

    path_found = 0;
    ctx->allow = 0;

    for ( /* void */ ; *tables; tables++) {

        for (rt = *tables; rt->handler; rt++) {

            if (!ngx_shinsei_router_match(r, &rt->path, params, &n)) {
                continue;
            }

            path_found = 1;

            if (!(rt->methods & r->method)) {
                ctx->allow |= rt->methods;
                continue;
            }

            ctx->route = rt;
            ctx->nparams = n;

            if (n) {
                ctx->params = ngx_palloc(r->pool, n * sizeof(ngx_str_t));
                if (ctx->params == NULL) {
                    return NGX_ERROR;
                }

                for (i = 0; i < n; i++) {
                    ctx->params[i] = params[i];
                }
            }

            return NGX_OK;
        }
    }

    /* no route: ctx->error is the page to answer with */

    ctx->error = path_found ? NGX_HTTP_NOT_ALLOWED : NGX_HTTP_NOT_FOUND;

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_shinsei_router_match(ngx_http_request_t *r, ngx_str_t *pattern,
    ngx_str_t *params, ngx_uint_t *nparams)
{
    u_char  *p, *plast, *u, *ulast, *pseg, *useg;

    p = pattern->data;
    plast = p + pattern->len;
    u = r->uri.data;
    ulast = u + r->uri.len;

    *nparams = 0;

    while (p < plast && u < ulast) {

        if (*p != '/' || *u != '/') {
            return 0;
        }

        p++;
        u++;

        pseg = p;
        while (p < plast && *p != '/') {
            p++;
        }

        useg = u;
        while (u < ulast && *u != '/') {
            u++;
        }

        if (p - pseg > 1 && *pseg == ':') {
            if (u == useg || *nparams == NGX_SHINSEI_MAX_PARAMS) {
                return 0;
            }

            params[*nparams].data = useg;
            params[*nparams].len = u - useg;
            (*nparams)++;
            continue;
        }

        if (p - pseg != u - useg || ngx_strncmp(pseg, useg, p - pseg) != 0) {
            return 0;
        }
    }

    return p == plast && u == ulast;
}
