
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The request lifecycle: route, read the body, parse it, load the tenant
 * and the session, check CSRF, run the page handler, render.  Each step
 * that waits on the database suspends the request and resumes here
 * through ngx_shinsei_continue(); the handler's status ends in
 * ngx_shinsei_finish(), which turns 4xx and 5xx into the site's error page.
 */


#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_tmpl.h"
#include "ngx_shinsei_session.h"
#include "ngx_shinsei_tenant.h"


static void ngx_shinsei_body_ready(ngx_http_request_t *r);
static void ngx_shinsei_run(ngx_http_request_t *r);
static void ngx_shinsei_check_broken(ngx_http_request_t *r);
static ngx_int_t ngx_shinsei_login_redirect(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_error_app(ngx_http_request_t *r);
static ngx_shinsei_ctx_t *ngx_shinsei_get_ctx(ngx_http_request_t *r);
static void ngx_shinsei_view_cleanup(void *data);
static ngx_int_t ngx_shinsei_site(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, cJSON *view);
static ngx_int_t ngx_shinsei_headers(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_output(ngx_http_request_t *r,
    ngx_chain_t *out);


static ngx_str_t  ngx_shinsei_html_type =
    ngx_string("text/html; charset=utf-8");

static ngx_str_t  ngx_shinsei_csp = ngx_string(
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'");


ngx_int_t
ngx_shinsei_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_shinsei_ctx_t       *ctx;
    ngx_shinsei_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_shinsei_module);

    if (slcf->app == NGX_SHINSEI_APP_ERROR) {
        return ngx_shinsei_error_app(r);
    }

    ctx = ngx_shinsei_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_shinsei_router_find(r, ctx, slcf->app);

    if (rc != NGX_OK) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_shinsei_tenant_city(r)) {
            return ngx_shinsei_error_page(r, rc);
        }

        /* the city first, so that even this page shows it */

        ctx->error = rc;
        r->main->count++;

        ngx_shinsei_finish(r, ngx_shinsei_continue(r, ctx));

        return NGX_DONE;
    }

    if (r->method == NGX_HTTP_POST) {

        if (r->headers_in.content_length_n > (off_t) slcf->body_limit) {
            if (ngx_http_discard_request_body(r) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_shinsei_error_page(r,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
        }

        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_shinsei_body_ready);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->main->count++;

    if (!r->discard_body) {
        r->read_event_handler = ngx_shinsei_check_broken;
    }

    ngx_shinsei_run(r);

    return NGX_DONE;
}


ngx_int_t
ngx_shinsei_continue(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t             rc;
    ngx_shinsei_route_t  *rt;

    rt = ctx->route;

    if (rt == NULL) {
        /* an error page waiting for the city (its load never fails it) */

        if (!ctx->tenant_done) {
            rc = ngx_shinsei_tenant_load(r, ctx);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        return ctx->error;
    }

    if (rt->flags & NGX_SHINSEI_ROUTE_BARE) {
        return rt->handler(r, ctx);
    }

    if (!ctx->tenant_done) {
        rc = ngx_shinsei_tenant_load(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!ctx->session_done) {
        rc = ngx_shinsei_session_load(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if ((rt->flags & NGX_SHINSEI_ROUTE_LOGIN) && ctx->session.citizen_id == 0)
    {
        return ngx_shinsei_login_redirect(r, ctx);
    }

    if (r->method == NGX_HTTP_POST && !ctx->csrf_done) {
        ctx->csrf_done = 1;
        ctx->csrf_ok = ngx_shinsei_session_csrf_ok(r, ctx);

        if (!ctx->csrf_ok) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          ngx_shinsei_log_prefix "form refused: CSRF token "
                          "missing or not of this session");

            return rt->form ? rt->form(r, ctx) : NGX_HTTP_FORBIDDEN;
        }
    }

    return rt->handler(r, ctx);
}


void
ngx_shinsei_finish(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc == NGX_DONE) {
        /* another step is under way */
        return;
    }

    if (rc == NGX_ERROR && !r->header_sent) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc >= NGX_HTTP_BAD_REQUEST) {
        rc = ngx_shinsei_error_page(r, rc);
    }

    if (r->read_event_handler == ngx_shinsei_check_broken) {
        r->read_event_handler = ngx_http_block_reading;
    }

    ngx_http_finalize_request(r, rc);
}


cJSON *
ngx_shinsei_view(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    if (ctx->view) {
        return ctx->view;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ctx->view = cJSON_CreateObject();
    if (ctx->view == NULL) {
        return NULL;
    }

    cln->handler = ngx_shinsei_view_cleanup;
    cln->data = ctx->view;

    return ctx->view;
}


ngx_int_t
ngx_shinsei_render(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *name, ngx_uint_t status)
{
    off_t                     size;
    cJSON                    *view;
    ngx_str_t                 tname;
    ngx_chain_t              *out;
    ngx_shinsei_tmpl_t       *t;
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_shinsei_module);

    tname.data = (u_char *) name;
    tname.len = ngx_strlen(name);

    t = ngx_shinsei_tmpl_find(smcf->templates, &tname);
    if (t == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      ngx_shinsei_log_prefix "no template \"%V\"", &tname);
        return NGX_ERROR;
    }

    view = ngx_shinsei_view(r, ctx);
    if (view == NULL) {
        return NGX_ERROR;
    }

    if (ngx_shinsei_site(r, ctx, view) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_shinsei_tmpl_render(t, view, r->pool, &out, &size) != NGX_OK) {
        return NGX_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = size;
    r->headers_out.content_type = ngx_shinsei_html_type;
    r->headers_out.content_type_len = ngx_shinsei_html_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_shinsei_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_shinsei_output(r, out);
}


ngx_int_t
ngx_shinsei_redirect(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *location)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value = *location;
    h->lowcase_key = NULL;
    r->headers_out.location = h;

    r->headers_out.status = NGX_HTTP_SEE_OTHER;
    r->headers_out.content_length_n = 0;

    if (ngx_shinsei_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


ngx_int_t
ngx_shinsei_redirect_to(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *location)
{
    ngx_str_t  loc;

    loc.data = (u_char *) location;
    loc.len = ngx_strlen(location);

    return ngx_shinsei_redirect(r, ctx, &loc);
}


ngx_int_t
ngx_shinsei_send(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *type,
    ngx_str_t *body)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = body->len ? 1 : 0;

    out.buf = b;
    out.next = NULL;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_shinsei_headers(r, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_shinsei_output(r, &out);
}


ngx_int_t
ngx_shinsei_error_page(ngx_http_request_t *r, ngx_uint_t status)
{
    u_char              key[16], *p;
    cJSON              *view;
    ngx_int_t           rc;
    ngx_str_t           value;
    ngx_shinsei_ctx_t  *ctx;

    if (r->header_sent) {
        /* too late for a page: the connection is closed instead */
        return NGX_ERROR;
    }

    ctx = ngx_shinsei_get_ctx(r);
    if (ctx == NULL) {
        return status;
    }

    /* the error replaces whatever the handler had built */

    if (ctx->view) {
        while (ctx->view->child) {
            cJSON_Delete(cJSON_DetachItemViaPointer(ctx->view,
                                                    ctx->view->child));
        }
    }

    view = ngx_shinsei_view(r, ctx);
    if (view == NULL) {
        return status;
    }

    /* the page has a text for these; others take their class's text */

    switch (status) {
    case 400: case 403: case 404: case 405: case 413: case 415: case 429:
    case 500: case 502: case 503: case 504:
        p = ngx_snprintf(key, sizeof(key) - 1, "e%ui", status);
        break;
    default:
        p = ngx_snprintf(key, sizeof(key) - 1, "e%ui", status / 100 * 100);
    }

    *p = '\0';

    if (cJSON_AddNumberToObject(view, "status", (double) status) == NULL
        || cJSON_AddTrueToObject(view, (char *) key) == NULL
        || (status >= 500
            && cJSON_AddTrueToObject(view, "server_error") == NULL))
    {
        return status;
    }

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_str_set(&value, "30");

        if (ngx_shinsei_add_header(r, "Retry-After", &value) != NGX_OK) {
            return status;
        }
    }

    if (status == NGX_HTTP_NOT_ALLOWED && ctx->allow) {
        value.data = ngx_pnalloc(r->pool, sizeof("GET, HEAD, POST, "));
        if (value.data == NULL) {
            return status;
        }

        p = value.data;

        if (ctx->allow & NGX_HTTP_GET) {
            p = ngx_cpymem(p, "GET, HEAD, ", 11);
        }

        if (ctx->allow & NGX_HTTP_POST) {
            p = ngx_cpymem(p, "POST, ", 6);
        }

        value.len = (p > value.data) ? (size_t) (p - value.data - 2) : 0;

        if (value.len
            && ngx_shinsei_add_header(r, "Allow", &value) != NGX_OK)
        {
            return status;
        }
    }

    rc = ngx_shinsei_render(r, ctx, "error", status);

    if (rc == NGX_ERROR && !r->header_sent) {
        return status;
    }

    return rc;
}


ngx_int_t
ngx_shinsei_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;
    h->lowcase_key = NULL;

    return NGX_OK;
}


static void
ngx_shinsei_body_ready(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_shinsei_check_broken;

    ngx_shinsei_run(r);
}


/*
 * A resident who gives up (closes the tab, a load balancer times out)
 * does not keep a database connection or a place in the queue: the
 * request ends at once and its query is cancelled (its pool cleanup).
 */

static void
ngx_shinsei_check_broken(ngx_http_request_t *r)
{
    int                n;
    char               buf[1];
    ngx_err_t          err;
    ngx_event_t       *ev;
    ngx_connection_t  *c;

    c = r->connection;
    ev = c->read;

    if (c->error) {
        goto gone;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        /* a reset stream sets c->error */
        return;
    }
#endif

#if (NGX_HAVE_EPOLLRDHUP)
    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {
        if (!ev->pending_eof) {
            return;
        }

        ev->eof = 1;
        c->error = 1;
        goto gone;
    }
#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0) {
        /* a pipelined request waits its turn */

        if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && ev->active) {
            (void) ngx_del_event(ev, NGX_READ_EVENT, 0);
        }

        return;
    }

    if (n == -1 && err == NGX_EAGAIN) {
        return;
    }

    ev->eof = 1;
    c->error = 1;

gone:

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  ngx_shinsei_log_prefix "client went away while its "
                  "request was waiting");

    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}


static void
ngx_shinsei_run(ngx_http_request_t *r)
{
    ngx_int_t           rc;
    ngx_shinsei_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    rc = ngx_shinsei_body_parse_args(r, ctx);

    if (rc == NGX_OK && r->method == NGX_HTTP_POST) {
        rc = ngx_shinsei_body_parse(r, ctx);
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      ngx_shinsei_log_prefix "request refused: malformed "
                      "query string or body (%i)", rc);
        ngx_shinsei_finish(r, rc);
        return;
    }

    ngx_shinsei_finish(r, ngx_shinsei_continue(r, ctx));
}


/*
 * "error_page 400 404 413 500 502 503 504 /_error;" with
 * "location = /_error { internal; shinsei_app error; }" gives the errors
 * nginx itself answers (a malformed request line, a body over
 * client_max_body_size) the same Japanese page as the module's own.
 */

static ngx_int_t
ngx_shinsei_error_app(ngx_http_request_t *r)
{
    ngx_uint_t          status;
    ngx_shinsei_ctx_t  *ctx;

    status = r->err_status ? r->err_status : NGX_HTTP_NOT_FOUND;

    /* nginx's own codes for a bad request header are a 400 to a client */

    if (status >= 494 && status <= 497) {
        status = NGX_HTTP_BAD_REQUEST;
        r->err_status = status;
    }

    ctx = ngx_shinsei_get_ctx(r);
    if (ctx == NULL) {
        return status;
    }

    if (status == NGX_HTTP_NOT_ALLOWED) {
        /* TRACE and the like: refused by nginx before any route */
        ctx->allow = NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_shinsei_error_page(r, status);
}


/*
 * To the login page, and back here after it: "next" is this page (a GET
 * only; a refused POST comes back to its form's page).
 */

static ngx_int_t
ngx_shinsei_login_redirect(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    u_char     *p;
    size_t      len;
    uintptr_t   escape;
    ngx_str_t   location;

    escape = ngx_escape_uri(NULL, r->uri.data, r->uri.len, NGX_ESCAPE_ARGS);

    len = sizeof("/login?next=") - 1 + r->uri.len + 2 * escape
          + sizeof("&expired=1") - 1;

    location.data = ngx_pnalloc(r->pool, len);
    if (location.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(location.data, "/login?next=", sizeof("/login?next=") - 1);
    p = (u_char *) ngx_escape_uri(p, r->uri.data, r->uri.len,
                                  NGX_ESCAPE_ARGS);

    if (ctx->session.expired) {
        p = ngx_cpymem(p, "&expired=1", sizeof("&expired=1") - 1);
    }

    location.len = p - location.data;

    return ngx_shinsei_redirect(r, ctx, &location);
}


static ngx_shinsei_ctx_t *
ngx_shinsei_get_ctx(ngx_http_request_t *r)
{
    ngx_shinsei_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_shinsei_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_shinsei_module);

    return ctx;
}


static void
ngx_shinsei_view_cleanup(void *data)
{
    cJSON_Delete(data);
}


static ngx_int_t
ngx_shinsei_site(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx, cJSON *view)
{
    u_char     *p, key[40];
    cJSON      *site, *city;
    ngx_str_t  *m;

    cJSON_DeleteItemFromObjectCaseSensitive(view, "site");

    site = cJSON_AddObjectToObject(view, "site");
    if (site == NULL) {
        return NGX_ERROR;
    }

    city = ngx_shinsei_tenant_city(r);

    if (city && cJSON_AddItemReferenceToObject(site, "city", city) == 0) {
        return NGX_ERROR;
    }

    /* "?m=name" after a redirect: the page says what happened */

    m = ngx_shinsei_field(ctx->args, "m");

    if (m && m->len && m->len <= 32) {
        for (p = m->data; p < m->data + m->len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || *p == '_')) {
                break;
            }
        }

        if (p == m->data + m->len) {
            *ngx_snprintf(key, sizeof(key) - 1, "m_%V", m) = '\0';

            if (cJSON_AddTrueToObject(site, (char *) key) == NULL) {
                return NGX_ERROR;
            }
        }
    }

    m = ngx_shinsei_field(ctx->args, "expired");

    if (m && m->len == 1 && m->data[0] == '1') {
        ctx->session.expired = 1;
    }

    return ngx_shinsei_session_view(r, ctx, site);
}


static ngx_int_t
ngx_shinsei_headers(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  value;

    if (ngx_shinsei_add_header(r, "Content-Security-Policy",
                               &ngx_shinsei_csp)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "nosniff");
    if (ngx_shinsei_add_header(r, "X-Content-Type-Options", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "same-origin");
    if (ngx_shinsei_add_header(r, "Referrer-Policy", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "DENY");
    if (ngx_shinsei_add_header(r, "X-Frame-Options", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    /* pages show who is logged in and hold forms: never cached */

    ngx_str_set(&value, "no-store");
    if (ngx_shinsei_add_header(r, "Cache-Control", &value) != NGX_OK) {
        return NGX_ERROR;
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&value, "max-age=63072000; includeSubDomains");
        if (ngx_shinsei_add_header(r, "Strict-Transport-Security", &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
#endif

    if (ctx) {
        return ngx_shinsei_session_cookie(r, ctx);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_output(ngx_http_request_t *r, ngx_chain_t *out)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    for (cl = out; cl->next; cl = cl->next) { /* void */ }

    cl->buf->last_buf = (r == r->main) ? 1 : 0;
    cl->buf->last_in_chain = 1;

    return ngx_http_output_filter(r, out);
}
