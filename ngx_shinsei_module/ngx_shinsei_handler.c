
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The top floor: the content handler of every shinsei_app location.  It
 * routes, reads and parses the body, then runs the app's steps in order,
 * as nginx runs its phases (ngx_shinsei_app.c lists them: the city, the
 * session, login, CSRF, the page).  A step answers NGX_DECLINED to go on,
 * NGX_DONE while a backend works for it (the backend wakes the request
 * through ngx_shinsei_request.c, and the step's resume function answers
 * the same way), or the response.  The end turns 4xx and 5xx into the
 * site's error page.
 */


#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_request.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_router.h"


static void ngx_shinsei_handler_body(ngx_http_request_t *r);
static void ngx_shinsei_handler_start(ngx_http_request_t *r);
static void ngx_shinsei_handler_wake(ngx_http_request_t *r);
static void ngx_shinsei_handler_steps(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_int_t rc);
static void ngx_shinsei_handler_end(ngx_http_request_t *r, ngx_int_t rc);
static ngx_int_t ngx_shinsei_handler_errors(ngx_http_request_t *r,
    ngx_shinsei_app_t *app);


ngx_int_t
ngx_shinsei_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_shinsei_ctx_t       *ctx;
    ngx_shinsei_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_shinsei_module);

    if (slcf->app->flags & NGX_SHINSEI_APP_ERRORS) {
        return ngx_shinsei_handler_errors(r, slcf->app);
    }

    ctx = ngx_shinsei_request_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->app = slcf->app;

    rc = ngx_shinsei_router_find(r, ctx, ctx->app->routes);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK && r->method == NGX_HTTP_POST) {

        if (r->headers_in.content_length_n > (off_t) slcf->body_limit) {
            if (ngx_http_discard_request_body(r) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_shinsei_response_error(r,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
        }

        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_shinsei_handler_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    /* a GET, or a request refused by the router: no body is read */

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->main->count++;

    ngx_shinsei_handler_start(r);

    return NGX_DONE;
}


/*
 * The last step: the page, or why there is none.  A POST whose CSRF token
 * was refused shows its form again, with what was typed.
 */

ngx_int_t
ngx_shinsei_handler_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_shinsei_route_t  *rt;

    rt = ctx->route;

    if (rt == NULL) {
        return ctx->error;
    }

    if (ctx->csrf_refused) {
        return rt->form ? rt->form(r, ctx) : NGX_HTTP_FORBIDDEN;
    }

    return rt->handler(r, ctx);
}


static void
ngx_shinsei_handler_body(ngx_http_request_t *r)
{
    ngx_shinsei_handler_start(r);
}


static void
ngx_shinsei_handler_start(ngx_http_request_t *r)
{
    ngx_int_t           rc;
    ngx_shinsei_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    ngx_shinsei_request_start(r, ngx_shinsei_handler_wake);

    if (ctx->route) {
        rc = ngx_shinsei_body_parse(r, ctx);

        if (rc == NGX_ERROR) {
            ctx->error = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          ngx_shinsei_log_prefix "request refused: "
                          "malformed query string or body (%ui)",
                          ctx->error);

            /* the steps before the page still run: its city is shown */
            ctx->route = NULL;
        }
    }

    ngx_shinsei_handler_steps(r, ctx, NGX_DECLINED);
}


/* a backend answered, or the client's socket had an event */

static void
ngx_shinsei_handler_wake(ngx_http_request_t *r)
{
    ngx_int_t           rc;
    ngx_shinsei_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    rc = ngx_shinsei_request_resume(r, ctx);

    if (rc == NGX_DECLINED) {
        /* the step that waited is done */
        ctx->step++;
    }

    ngx_shinsei_handler_steps(r, ctx, rc);
}


static void
ngx_shinsei_handler_steps(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_shinsei_step_pt  step;

    while (rc == NGX_DECLINED) {

        step = ctx->app->steps[ctx->step];

        if (step == NULL) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          ngx_shinsei_log_prefix "no step answered");
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            break;
        }

        rc = step(r, ctx);

        if (rc == NGX_DECLINED) {
            ctx->step++;
        }
    }

    if (rc == NGX_DONE) {
        /* a backend works for the step; its wake goes on */
        return;
    }

    ngx_shinsei_handler_end(r, rc);
}


/*
 * The answer: NGX_ERROR before the header is a 500, NGX_BUSY (a backend
 * that is full) a 503, and every status from 400 the site's error page.
 */

static void
ngx_shinsei_handler_end(ngx_http_request_t *r, ngx_int_t rc)
{
    if ((rc == NGX_ERROR || rc == NGX_DECLINED) && !r->header_sent) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_BUSY) {
        rc = NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (rc >= NGX_HTTP_BAD_REQUEST) {
        rc = ngx_shinsei_response_error(r, rc);
    }

    ngx_shinsei_request_end(r, rc);
}


/*
 * "error_page 400 404 413 500 502 503 504 /_error;" with
 * "location = /_error { internal; shinsei_app error; }" gives the errors
 * nginx itself answers (a malformed request line, a body over
 * client_max_body_size) the same Japanese page as the module's own.
 */

static ngx_int_t
ngx_shinsei_handler_errors(ngx_http_request_t *r, ngx_shinsei_app_t *app)
{
    ngx_uint_t          status;
    ngx_shinsei_ctx_t  *ctx;

    status = r->err_status ? r->err_status : NGX_HTTP_NOT_FOUND;

    /* nginx's own codes for a bad request header are a 400 to a client */

    if (status >= 494 && status <= 497) {
        status = NGX_HTTP_BAD_REQUEST;
        r->err_status = status;
    }

    ctx = ngx_shinsei_request_ctx(r);
    if (ctx == NULL) {
        return status;
    }

    ctx->app = app;

    if (status == NGX_HTTP_NOT_ALLOWED) {
        /* TRACE and the like: refused by nginx before any route */
        ctx->allow = NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_shinsei_response_error(r, status);
}
