
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Responses, in one place: the view model (cJSON), rendering a page
 * through its template, redirects, small bodies, the site's error pages,
 * and the security headers, which a header filter adds to every answer
 * of an app for browsers.  What a page shows of the city and of the
 * session comes from the request's context, filled by the steps: nothing
 * here calls them.
 */


#include "ngx_shinsei_response.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_request.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_tmpl.h"


static ngx_int_t ngx_shinsei_response_header_filter(ngx_http_request_t *r);
static void ngx_shinsei_response_view_cleanup(void *data);
static ngx_int_t ngx_shinsei_response_site(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, cJSON *view);
static ngx_int_t ngx_shinsei_response_output(ngx_http_request_t *r,
    ngx_chain_t *out);


static ngx_http_output_header_filter_pt  ngx_shinsei_response_next_header;


static ngx_str_t  ngx_shinsei_html_type =
    ngx_string("text/html; charset=utf-8");

static ngx_str_t  ngx_shinsei_json_type = ngx_string("application/json");

static ngx_str_t  ngx_shinsei_csp = ngx_string(
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'");


ngx_int_t
ngx_shinsei_response_init(ngx_conf_t *cf)
{
    ngx_shinsei_response_next_header = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_shinsei_response_header_filter;

    return NGX_OK;
}


cJSON *
ngx_shinsei_response_view(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
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

    cln->handler = ngx_shinsei_response_view_cleanup;
    cln->data = ctx->view;

    return ctx->view;
}


/* the members of json (an object, then freed) go into the view */

ngx_int_t
ngx_shinsei_response_view_json(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    cJSON *json)
{
    cJSON  *item, *view;

    if (!cJSON_IsObject(json)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "query did not return "
                      "a JSON object");
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    view = ngx_shinsei_response_view(r, ctx);
    if (view == NULL) {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    while (json->child) {
        item = cJSON_DetachItemViaPointer(json, json->child);
        cJSON_DeleteItemFromObjectCaseSensitive(view, item->string);
        cJSON_AddItemToObject(view, item->string, item);
    }

    cJSON_Delete(json);

    return NGX_OK;
}


/* the same, from a JSON text kept elsewhere (a worker's copy) */

ngx_int_t
ngx_shinsei_response_view_text(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *text)
{
    return ngx_shinsei_response_view_json(r, ctx,
                                   cJSON_ParseWithLength((char *) text->data,
                                                         text->len));
}


ngx_int_t
ngx_shinsei_response_render(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
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

    view = ngx_shinsei_response_view(r, ctx);
    if (view == NULL) {
        return NGX_ERROR;
    }

    if (ngx_shinsei_response_site(r, ctx, view) != NGX_OK) {
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

    return ngx_shinsei_response_output(r, out);
}


ngx_int_t
ngx_shinsei_response_redirect(ngx_http_request_t *r, ngx_str_t *location)
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

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


ngx_int_t
ngx_shinsei_response_redirect_to(ngx_http_request_t *r, const char *location)
{
    ngx_str_t  loc;

    loc.data = (u_char *) location;
    loc.len = ngx_strlen(location);

    return ngx_shinsei_response_redirect(r, &loc);
}


ngx_int_t
ngx_shinsei_response_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *body)
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

    return ngx_shinsei_response_output(r, &out);
}


/*
 * The site's error page for status, in place of whatever the page had
 * built; for an app that is not for browsers, a line of JSON.
 */

ngx_int_t
ngx_shinsei_response_error(ngx_http_request_t *r, ngx_uint_t status)
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

    ctx = ngx_shinsei_request_ctx(r);
    if (ctx == NULL) {
        return status;
    }

    if (ctx->app && !(ctx->app->flags & NGX_SHINSEI_APP_BROWSER)) {
        value.data = ngx_pnalloc(r->pool, 32);
        if (value.data == NULL) {
            return status;
        }

        value.len = ngx_sprintf(value.data, "{\"status\":%ui}\n", status)
                    - value.data;

        rc = ngx_shinsei_response_send(r, status, &ngx_shinsei_json_type,
                                       &value);

        return (rc == NGX_ERROR && !r->header_sent) ? (ngx_int_t) status
                                                     : rc;
    }

    /* the error replaces whatever the page had built */

    if (ctx->view) {
        while (ctx->view->child) {
            cJSON_Delete(cJSON_DetachItemViaPointer(ctx->view,
                                                    ctx->view->child));
        }
    }

    view = ngx_shinsei_response_view(r, ctx);
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

        if (ngx_shinsei_response_header(r, "Retry-After", &value) != NGX_OK) {
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
            && ngx_shinsei_response_header(r, "Allow", &value) != NGX_OK)
        {
            return status;
        }
    }

    rc = ngx_shinsei_response_render(r, ctx, "error", status);

    if (rc == NGX_ERROR && !r->header_sent) {
        return status;
    }

    return rc;
}


ngx_int_t
ngx_shinsei_response_header(ngx_http_request_t *r, const char *key,
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


/*
 * Every answer of an app for browsers: no inline script, no framing, no
 * sniffing, and never cached (pages show who is logged in and hold
 * forms).
 */

static ngx_int_t
ngx_shinsei_response_header_filter(ngx_http_request_t *r)
{
    ngx_str_t           value;
    ngx_shinsei_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    if (ctx == NULL || ctx->app == NULL || r != r->main
        || !(ctx->app->flags & NGX_SHINSEI_APP_BROWSER))
    {
        return ngx_shinsei_response_next_header(r);
    }

    if (ngx_shinsei_response_header(r, "Content-Security-Policy",
                                    &ngx_shinsei_csp)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "nosniff");
    if (ngx_shinsei_response_header(r, "X-Content-Type-Options", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* a page a mailed link opens tells no other site its address */

    if (ctx->route && (ctx->route->flags & NGX_SHINSEI_ROUTE_TOKEN)) {
        ngx_str_set(&value, "no-referrer");

    } else {
        ngx_str_set(&value, "same-origin");
    }

    if (ngx_shinsei_response_header(r, "Referrer-Policy", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "DENY");
    if (ngx_shinsei_response_header(r, "X-Frame-Options", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "no-store");
    if (ngx_shinsei_response_header(r, "Cache-Control", &value) != NGX_OK) {
        return NGX_ERROR;
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&value, "max-age=63072000; includeSubDomains");
        if (ngx_shinsei_response_header(r, "Strict-Transport-Security",
                                        &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
#endif

    return ngx_shinsei_response_next_header(r);
}


static void
ngx_shinsei_response_view_cleanup(void *data)
{
    cJSON_Delete(data);
}


/* what the layout shows on every page: the city, the user, messages */

static ngx_int_t
ngx_shinsei_response_site(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    cJSON *view)
{
    u_char                  *p, key[40];
    char                    *s;
    cJSON                   *site, *city, *user;
    ngx_str_t               *m;
    ngx_shinsei_session_t   *ss;
    ngx_shinsei_srv_conf_t  *sscf;

    cJSON_DeleteItemFromObjectCaseSensitive(view, "site");

    site = cJSON_AddObjectToObject(view, "site");
    if (site == NULL) {
        return NGX_ERROR;
    }

    /* the city is there even for an error page before its step ran */

    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);

    city = (sscf && sscf->cache) ? sscf->cache->city : NULL;

    if (city && cJSON_AddItemReferenceToObject(site, "city", city) == 0) {
        return NGX_ERROR;
    }

    /* "?m=name" after a redirect: the page says what happened */

    m = ngx_shinsei_body_field(ctx->args, "m");

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

    ss = &ctx->session;

    m = ngx_shinsei_body_field(ctx->args, "expired");

    if (ss->expired || (m && m->len == 1 && m->data[0] == '1')) {
        if (cJSON_AddTrueToObject(site, "session_expired") == NULL) {
            return NGX_ERROR;
        }
    }

    if (ss->valid) {
        s = ngx_shinsei_string_cstr(r->pool, &ss->csrf);

        if (s == NULL || cJSON_AddStringToObject(site, "csrf", s) == NULL) {
            return NGX_ERROR;
        }
    }

    /* refused for no session at all: sending it again cannot help */

    if (ctx->csrf_refused
        && cJSON_AddTrueToObject(site, ss->valid ? "csrf_error"
                                                 : "csrf_no_session")
           == NULL)
    {
        return NGX_ERROR;
    }

    if (ss->user_id) {
        user = cJSON_AddObjectToObject(site, "user");
        s = ngx_shinsei_string_cstr(r->pool, &ss->name);

        if (user == NULL || s == NULL
            || cJSON_AddStringToObject(user, "name", s) == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_response_output(ngx_http_request_t *r, ngx_chain_t *out)
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
