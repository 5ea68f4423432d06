
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Request bodies and query strings: application/x-www-form-urlencoded
 * (WHATWG URL, "application/x-www-form-urlencoded parsing") and
 * multipart/form-data (RFC 7578), parsed into name/value fields held in
 * the request pool.  Names and text values must be valid UTF-8.
 */


#include "ngx_shinsei_body.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_string.h"


static ngx_int_t ngx_shinsei_body_read(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_body_urlencoded(ngx_http_request_t *r,
    ngx_array_t *fields, u_char *p, u_char *last);
static ngx_int_t ngx_shinsei_body_multipart(ngx_http_request_t *r,
    ngx_array_t *fields, ngx_str_t *type, u_char *p, u_char *last,
    ngx_uint_t files);
static ngx_int_t ngx_shinsei_body_part_headers(ngx_http_request_t *r,
    ngx_shinsei_field_t *f, u_char *p, u_char *last);
static ngx_int_t ngx_shinsei_body_param(u_char *p, u_char *last,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_shinsei_body_unescape(ngx_pool_t *pool, u_char *p,
    u_char *last, ngx_str_t *out);
static void ngx_shinsei_body_wipe(ngx_http_request_t *r, ngx_str_t *body);
static ngx_int_t ngx_shinsei_body_contiguous(ngx_http_request_t *r,
    ngx_str_t *body);


/*
 * The query string, and the body of a POST: NGX_OK, NGX_ERROR, or
 * NGX_DECLINED when the request is refused, ctx->error saying why (400,
 * 413, 415).
 */

ngx_int_t
ngx_shinsei_body_parse(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t  rc;

    ctx->args = ngx_array_create(r->pool, 4, sizeof(ngx_shinsei_field_t));
    if (ctx->args == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_shinsei_body_urlencoded(r, ctx->args, r->args.data,
                                     r->args.data + r->args.len);

    if (rc == NGX_OK && r->method == NGX_HTTP_POST) {
        rc = ngx_shinsei_body_read(r, ctx);
    }

    if (rc == NGX_OK || rc == NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return rc == NGX_OK ? NGX_OK : NGX_ERROR;
    }

    ctx->error = rc;

    return NGX_DECLINED;
}


/* the body of a POST, into ctx->form: NGX_OK or the status to refuse */

static ngx_int_t
ngx_shinsei_body_read(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t                rc;
    ngx_str_t                body, type;
    ngx_shinsei_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_shinsei_module);

    ctx->form = ngx_array_create(r->pool, 8, sizeof(ngx_shinsei_field_t));
    if (ctx->form == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    if (r->request_body->temp_file) {
        /* client_body_buffer_size is below the body: it went to disk */
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    rc = ngx_shinsei_body_contiguous(r, &body);
    if (rc != NGX_OK) {
        return rc;
    }

    if (body.len > slcf->body_limit) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    if (r->headers_in.content_type == NULL) {
        return body.len ? NGX_HTTP_UNSUPPORTED_MEDIA_TYPE : NGX_OK;
    }

    type = r->headers_in.content_type->value;

    if (type.len >= 33
        && ngx_strncasecmp(type.data,
                           (u_char *) "application/x-www-form-urlencoded",
                           33) == 0
        && (type.len == 33 || type.data[33] == ';' || type.data[33] == ' '))
    {
        rc = ngx_shinsei_body_urlencoded(r, ctx->form, body.data,
                                         body.data + body.len);

        /*
         * The fields are copies; the raw body (a password, an address)
         * is wiped now rather than left in memory until the pool goes.
         * Multipart fields point into it and stay until the pool goes.
         */

        ngx_shinsei_body_wipe(r, &body);

        return rc;
    }

    if (type.len >= 19
        && ngx_strncasecmp(type.data, (u_char *) "multipart/form-data", 19)
           == 0
        && (type.len == 19 || type.data[19] == ';' || type.data[19] == ' '))
    {
        if (body.len == 0) {
            /* not even the closing delimiter */
            return NGX_HTTP_BAD_REQUEST;
        }

        return ngx_shinsei_body_multipart(r, ctx->form, &type, body.data,
                                          body.data + body.len,
                                          ctx->route->flags
                                          & NGX_SHINSEI_ROUTE_FILES);
    }

    return NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
}


ngx_str_t *
ngx_shinsei_body_field(ngx_array_t *fields, const char *name)
{
    size_t                len;
    ngx_uint_t            i;
    ngx_shinsei_field_t  *f;

    if (fields == NULL) {
        return NULL;
    }

    len = ngx_strlen(name);
    f = fields->elts;

    /* text only: a file part is not a field's value */

    for (i = 0; i < fields->nelts; i++) {
        if (f[i].name.len == len && f[i].filename.data == NULL
            && ngx_strncmp(f[i].name.data, name, len) == 0)
        {
            return &f[i].value;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_shinsei_body_urlencoded(ngx_http_request_t *r, ngx_array_t *fields,
    u_char *p, u_char *last)
{
    u_char               *amp, *eq;
    ngx_shinsei_field_t  *f;

    while (p < last) {

        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if (amp == p) {
            p++;
            continue;
        }

        if (fields->nelts == NGX_SHINSEI_MAX_FIELDS) {
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        f = ngx_array_push(fields);
        if (f == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memzero(f, sizeof(ngx_shinsei_field_t));

        eq = ngx_strlchr(p, amp, '=');
        if (eq == NULL) {
            eq = amp;
        }

        if (ngx_shinsei_body_unescape(r->pool, p, eq, &f->name) != NGX_OK
            || ngx_shinsei_body_unescape(r->pool, eq < amp ? eq + 1 : amp,
                                         amp, &f->value)
               != NGX_OK)
        {
            return NGX_HTTP_BAD_REQUEST;
        }

        if (f->name.len == 0 || f->name.len > NGX_SHINSEI_MAX_NAME
            || ngx_shinsei_string_utf8_valid(f->name.data, f->name.len)
               != NGX_OK
            || ngx_shinsei_string_utf8_valid(f->value.data, f->value.len)
               != NGX_OK)
        {
            return NGX_HTTP_BAD_REQUEST;
        }

        p = amp + 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_body_multipart(ngx_http_request_t *r, ngx_array_t *fields,
    ngx_str_t *type, u_char *p, u_char *last, ngx_uint_t files)
{
    u_char               *h, *end, *delim;
    size_t                dlen;
    ngx_int_t             rc;
    ngx_str_t             boundary;
    ngx_shinsei_field_t  *f;

    if (ngx_shinsei_body_param(type->data, type->data + type->len,
                               "boundary", &boundary)
        != NGX_OK
        || boundary.len == 0 || boundary.len > 70)
    {
        return NGX_HTTP_BAD_REQUEST;
    }

    /* the delimiter is CRLF "--" boundary; the first one may lack CRLF */

    dlen = boundary.len + 4;
    delim = ngx_pnalloc(r->pool, dlen);
    if (delim == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    delim[0] = CR;
    delim[1] = LF;
    delim[2] = '-';
    delim[3] = '-';
    ngx_memcpy(delim + 4, boundary.data, boundary.len);

    if ((size_t) (last - p) >= dlen - 2
        && ngx_memcmp(p, delim + 2, dlen - 2) == 0)
    {
        p += dlen - 2;

    } else {
        p = memmem(p, last - p, delim, dlen);
        if (p == NULL) {
            return NGX_HTTP_BAD_REQUEST;
        }

        p += dlen;
    }

    for ( ;; ) {

        /* after a delimiter: "--" ends the body, CRLF starts a part */

        if (last - p >= 2 && p[0] == '-' && p[1] == '-') {
            return NGX_OK;
        }

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (last - p < 2 || p[0] != CR || p[1] != LF) {
            return NGX_HTTP_BAD_REQUEST;
        }

        p += 2;

        h = memmem(p, last - p, "\r\n\r\n", 4);

        if (h == NULL) {
            return NGX_HTTP_BAD_REQUEST;
        }

        if (fields->nelts == NGX_SHINSEI_MAX_FIELDS) {
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        f = ngx_array_push(fields);
        if (f == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memzero(f, sizeof(ngx_shinsei_field_t));

        rc = ngx_shinsei_body_part_headers(r, f, p, h + 2);
        if (rc != NGX_OK) {
            return rc;
        }

        p = h + 4;

        end = memmem(p, last - p, delim, dlen);
        if (end == NULL) {
            return NGX_HTTP_BAD_REQUEST;
        }

        f->value.data = p;
        f->value.len = end - p;

        /*
         * a part with a filename is a file, never read as text (see
         * ngx_shinsei_body_field()); only a page that takes files gets
         * one; every other part is text, and checked as text
         */

        if (f->filename.data && !files) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          ngx_shinsei_log_prefix "a file part where no file "
                          "is expected");
            return NGX_HTTP_BAD_REQUEST;
        }

        if (f->filename.data == NULL
            && ngx_shinsei_string_utf8_valid(f->value.data, f->value.len)
               != NGX_OK)
        {
            return NGX_HTTP_BAD_REQUEST;
        }

        p = end + dlen;
    }
}


static ngx_int_t
ngx_shinsei_body_part_headers(ngx_http_request_t *r, ngx_shinsei_field_t *f,
    u_char *p, u_char *last)
{
    u_char     *eol, *colon, *v;
    ngx_str_t   name, filename;

    while (p < last) {

        eol = memmem(p, last - p, "\r\n", 2);
        if (eol == NULL) {
            eol = last;
        }

        colon = ngx_strlchr(p, eol, ':');
        if (colon == NULL) {
            return NGX_HTTP_BAD_REQUEST;
        }

        v = colon + 1;

        while (v < eol && (*v == ' ' || *v == '\t')) {
            v++;
        }

        if (colon - p == 19
            && ngx_strncasecmp(p, (u_char *) "Content-Disposition", 19) == 0)
        {
            if (eol - v < 9
                || ngx_strncasecmp(v, (u_char *) "form-data", 9) != 0)
            {
                return NGX_HTTP_BAD_REQUEST;
            }

            if (ngx_shinsei_body_param(v, eol, "name", &name) != NGX_OK) {
                return NGX_HTTP_BAD_REQUEST;
            }

            f->name.data = ngx_pstrdup(r->pool, &name);
            f->name.len = name.len;

            if (ngx_shinsei_body_param(v, eol, "filename", &filename)
                == NGX_OK)
            {
                f->filename.data = ngx_pstrdup(r->pool, &filename);
                f->filename.len = filename.len;

                if (f->filename.data == NULL && filename.len) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                if (f->filename.data == NULL) {
                    f->filename.data = (u_char *) "";
                }
            }

        } else if (colon - p == 12
                   && ngx_strncasecmp(p, (u_char *) "Content-Type", 12) == 0)
        {
            f->content_type.data = v;
            f->content_type.len = eol - v;
        }

        p = eol + 2;
    }

    if (f->name.len == 0 || f->name.len > NGX_SHINSEI_MAX_NAME
        || ngx_shinsei_string_utf8_valid(f->name.data, f->name.len) != NGX_OK
        || (f->filename.len
            && ngx_shinsei_string_utf8_valid(f->filename.data, f->filename.len)
               != NGX_OK))
    {
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/* a parameter of a header value: name=token or name="quoted" */

static ngx_int_t
ngx_shinsei_body_param(u_char *p, u_char *last, const char *name,
    ngx_str_t *value)
{
    u_char  *start;
    size_t   len;

    len = ngx_strlen(name);

    while (p < last) {

        /* the next ';' outside a quoted string */

        while (p < last && *p != ';') {
            if (*p++ == '"') {
                while (p < last && *p != '"') {
                    p++;
                }

                if (p == last) {
                    return NGX_ERROR;
                }

                p++;
            }
        }

        if (p == last) {
            return NGX_DECLINED;
        }

        p++;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if ((size_t) (last - p) <= len
            || ngx_strncasecmp(p, (u_char *) name, len) != 0
            || p[len] != '=')
        {
            continue;
        }

        p += len + 1;

        if (p < last && *p == '"') {
            start = ++p;

            while (p < last && *p != '"') {
                p++;
            }

            if (p == last) {
                return NGX_ERROR;
            }

        } else {
            start = p;

            while (p < last && *p != ';' && *p != ' ') {
                p++;
            }
        }

        value->data = start;
        value->len = p - start;

        return NGX_OK;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_shinsei_body_unescape(ngx_pool_t *pool, u_char *p, u_char *last,
    ngx_str_t *out)
{
    u_char  *d, c, h, l;

    out->data = ngx_pnalloc(pool, (last - p) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    d = out->data;

    while (p < last) {
        c = *p++;

        if (c == '+') {
            *d++ = ' ';
            continue;
        }

        if (c != '%') {
            *d++ = c;
            continue;
        }

        if (last - p < 2) {
            return NGX_ERROR;
        }

        h = (u_char) (p[0] | 0x20);
        l = (u_char) (p[1] | 0x20);

        if (h >= '0' && h <= '9') {
            h -= '0';

        } else if (h >= 'a' && h <= 'f') {
            h = h - 'a' + 10;

        } else {
            return NGX_ERROR;
        }

        if (l >= '0' && l <= '9') {
            l -= '0';

        } else if (l >= 'a' && l <= 'f') {
            l = l - 'a' + 10;

        } else {
            return NGX_ERROR;
        }

        *d++ = (u_char) (h << 4 | l);
        p += 2;
    }

    *d = '\0';
    out->len = d - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_body_contiguous(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;

    if (cl->next == NULL) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for ( /* void */ ; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    body->data = ngx_pnalloc(r->pool, len);
    if (body->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = body->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        /* the last buffer of a chunked body may be an empty one */
        if (cl->buf->last != cl->buf->pos) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    body->len = len;

    return NGX_OK;
}


static void
ngx_shinsei_body_wipe(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_chain_t  *cl;

    ngx_explicit_memzero(body->data, body->len);

    if (r->request_body->bufs->next == NULL) {
        return;
    }

    /* body was a copy: the buffers it was copied from, too */

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->last != cl->buf->pos) {
            ngx_explicit_memzero(cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }
}
