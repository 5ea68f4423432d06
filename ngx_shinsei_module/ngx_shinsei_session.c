
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Sessions.  The browser holds a 256-bit random ID in the app's cookie
 * (__Host-sid for residents: Secure, HttpOnly, SameSite=Lax); the
 * sessions table holds its SHA-256, the kind of user (the app's), who is
 * logged in and how far they authenticated.  The CSRF token of a session
 * is derived from its ID, so it needs no storage and changes when the ID
 * does.
 *
 * The steps here: the session (loaded, touched and, for pages with forms,
 * made, in one statement of the app's), login required, and CSRF.
 *
 * Live sessions are kept in a shared-memory zone (shinsei_session_cache,
 * ngx_shinsei_session_cache.c), one per nginx, looked up by the ID's
 * hash, so a logged-in page costs no query.  PostgreSQL stays the truth:
 *
 * - a miss reads it, and keeps what it read unless a session was
 *   forgotten meanwhile (it could be this one);
 * - logout, a password change, leaving and the pages that change what a
 *   session shows forget the entries at once here, and every statement
 *   that deletes sessions or changes an account NOTIFYs shinsei_session
 *   with their hashes (sql/008), which every worker of every node reads;
 * - nothing is served from the zone while this worker's LISTEN connection
 *   is down, and the zone is emptied when it comes back;
 * - an entry lives at most the zone's ttl (60 s at most), so the
 *   once-a-minute touch of the row still happens, at the next miss;
 * - the idle and absolute timeouts are checked on every hit.
 */


#include "ngx_shinsei_session.h"
#include "ngx_shinsei_session_cache.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_request.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_string.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>


static ngx_int_t ngx_shinsei_session_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_session_user(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_session_cookie_value(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_shinsei_session_header_filter(ngx_http_request_t *r);
static ngx_uint_t ngx_shinsei_session_same_origin(ngx_http_request_t *r);
static ngx_str_t *ngx_shinsei_session_cookie_name(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_uint_t ngx_shinsei_session_insecure(ngx_http_request_t *r);
static ngx_int_t ngx_shinsei_session_derive_csrf(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static void ngx_shinsei_session_hash(ngx_str_t *id, u_char *hash);
static ngx_int_t ngx_shinsei_session_hex(ngx_pool_t *pool, u_char *hash,
    ngx_str_t *hex);
static ngx_int_t ngx_shinsei_session_login_redirect(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);

static ngx_http_output_header_filter_pt  ngx_shinsei_session_next_header;

ngx_int_t
ngx_shinsei_session_init(ngx_conf_t *cf)
{
    ngx_shinsei_session_next_header = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_shinsei_session_header_filter;

    return NGX_OK;
}


/*
 * The session step.  $1 the hash of the presented ID (or ''), $2 the
 * city, $3 and $4 the idle and absolute lifetimes in seconds, $5 the hash
 * of a new ID to create a session under when there is no live one (or ''
 * for none).  The app's statement answers: live, user id, level, created
 * and last seen (epoch seconds), profile (JSON), created now.
 */

ngx_int_t
ngx_shinsei_session_step(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    u_char                   *p;
    ngx_str_t                 value, params[5], new_id, new_hash, *name;
    ngx_shinsei_route_t      *rt;
    ngx_shinsei_session_t    *ss;
    ngx_shinsei_loc_conf_t   *slcf;

    rt = ctx->route;
    ss = &ctx->session;

    if (rt == NULL || (rt->flags & NGX_SHINSEI_ROUTE_BARE)) {
        return NGX_DECLINED;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_shinsei_module);

    name = ngx_shinsei_session_cookie_name(r, ctx);

    if (ngx_shinsei_session_cookie_value(r, name, &value) != NGX_OK
        || value.len != NGX_SHINSEI_SESSION_ID_LEN)
    {
        ngx_str_null(&value);
    }

    for (p = value.data; p && p < value.data + value.len; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            ngx_str_null(&value);
            break;
        }
    }

    ngx_str_set(&params[0], "");
    ngx_str_set(&params[4], "");

    if (value.len) {
        ss->id.data = ngx_pstrdup(r->pool, &value);
        if (ss->id.data == NULL) {
            return NGX_ERROR;
        }

        ss->id.len = value.len;

        ngx_shinsei_session_hash(&ss->id, ss->hash);

        if (ngx_shinsei_session_cache_get(r->pool, ss, ctx->app->kind,
                                          &ctx->tenant->code,
                                          slcf->session_idle,
                                          slcf->session_absolute)
            == NGX_OK)
        {
            return ngx_shinsei_session_user(r, ctx);
        }

        if (ngx_shinsei_session_hex(r->pool, ss->hash, &params[0])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!(rt->flags & NGX_SHINSEI_ROUTE_SESSION)) {
        /* an anonymous visit to a page without forms costs no query */
        return NGX_DECLINED;
    }

    if (value.len == 0 && r->method == NGX_HTTP_POST
        && !ngx_shinsei_session_same_origin(r))
    {
        /*
         * A POST without our cookie: a browser sends a SameSite=Lax
         * cookie with every POST from our own pages, so this one came
         * from elsewhere (or from a browser that keeps no cookies).  A
         * session made now would replace the victim's cookie and log
         * them out: none is made, and the CSRF step refuses the form.
         * Only a browser that says the form is ours (Sec-Fetch-Site:
         * same-origin) gets a new session, to send the form again.
         */
        return NGX_DECLINED;
    }

    if (rt->flags & NGX_SHINSEI_ROUTE_SESSION) {
        if (ngx_shinsei_crypto_token(r->pool, &new_id, &new_hash)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ss->new_id = new_id;
        params[4] = new_hash;
    }

    params[1] = ctx->tenant->code;

    params[2].data = ngx_pnalloc(r->pool, 2 * NGX_TIME_T_LEN);
    if (params[2].data == NULL) {
        return NGX_ERROR;
    }

    params[2].len = ngx_sprintf(params[2].data, "%T", slcf->session_idle)
                    - params[2].data;
    params[3].data = params[2].data + params[2].len;
    params[3].len = ngx_sprintf(params[3].data, "%T",
                                slcf->session_absolute)
                    - params[3].data;

    return ngx_shinsei_db_query(r, ctx->app->session_stmt, params, 5,
                                ngx_shinsei_session_loaded, 0);
}


/* a page for logged-in users: the login page first, and back after it */

ngx_int_t
ngx_shinsei_session_login_step(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    if (ctx->route == NULL || !(ctx->route->flags & NGX_SHINSEI_ROUTE_LOGIN))
    {
        return NGX_DECLINED;
    }

    if (ctx->session.user_id && ctx->session.level >= ctx->app->login_level)
    {
        return NGX_DECLINED;
    }

    return ngx_shinsei_session_login_redirect(r, ctx);
}


/*
 * Every POST carries the session's CSRF token; a refused one is shown
 * its form again by the page step, with what was typed.  A POST the
 * browser says came from another site (Fetch Metadata) is refused
 * outright, with the 403 page.
 */

ngx_int_t
ngx_shinsei_session_csrf_step(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t              *token, *site;
    ngx_shinsei_session_t  *ss;

    if (ctx->route == NULL || r->method != NGX_HTTP_POST
        || (ctx->route->flags & NGX_SHINSEI_ROUTE_BARE))
    {
        return NGX_DECLINED;
    }

    site = ngx_shinsei_request_header(r, "Sec-Fetch-Site");

    if (site && site->len == 10
        && ngx_strncasecmp(site->data, (u_char *) "cross-site", 10) == 0)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      ngx_shinsei_log_prefix "form refused: sent from "
                      "another site (Sec-Fetch-Site: cross-site)");
        return NGX_HTTP_FORBIDDEN;
    }

    ss = &ctx->session;
    ctx->csrf_checked = 1;

    token = ngx_shinsei_body_field(ctx->form, "_csrf");

    if (ss->valid && !ss->created_now && token
        && token->len == ss->csrf.len
        && CRYPTO_memcmp(token->data, ss->csrf.data, token->len) == 0)
    {
        return NGX_DECLINED;
    }

    ctx->csrf_refused = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  ngx_shinsei_log_prefix "form refused: CSRF token "
                  "missing or not of this session");

    return NGX_DECLINED;
}


/*
 * A value of the session's profile (what the app's statement gave): key
 * in it, decrypted as the value of column ("citizens.name_enc") of the
 * user's row if column is not NULL.  NGX_DECLINED if none.
 */

ngx_int_t
ngx_shinsei_session_profile(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *key, const char *column, ngx_str_t *out)
{
    u_char      aad[NGX_SHINSEI_AAD_LEN];
    cJSON      *doc, *item;
    ngx_int_t   rc;
    ngx_str_t   value;

    ngx_str_null(out);

    if (ctx->session.profile.len == 0) {
        return NGX_DECLINED;
    }

    doc = cJSON_ParseWithLength((char *) ctx->session.profile.data,
                                ctx->session.profile.len);
    if (doc == NULL) {
        return NGX_ERROR;
    }

    item = cJSON_GetObjectItemCaseSensitive(doc, key);

    if (!cJSON_IsString(item)) {
        cJSON_Delete(doc);
        return NGX_DECLINED;
    }

    value.data = (u_char *) item->valuestring;
    value.len = ngx_strlen(item->valuestring);

    if (column) {
        rc = ngx_shinsei_crypto_decrypt(r->pool, &value,
                                        ngx_shinsei_crypto_aad_id(aad, column,
                                                     ctx->session.user_id),
                                        out);

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          ngx_shinsei_log_prefix "cannot decrypt a \"%s\" "
                          "value of a session: wrong or missing data key, "
                          "or not this row's value", column);
        }

    } else {
        out->data = ngx_pstrdup(r->pool, &value);
        out->len = value.len;
        rc = out->data ? NGX_OK : NGX_ERROR;
    }

    cJSON_Delete(doc);

    return rc;
}


/*
 * The hash of the session's ID in hex, for a statement: NGX_DECLINED if
 * there is no session.
 */

ngx_int_t
ngx_shinsei_session_id_hash(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *hex)
{
    if (!ctx->session.valid) {
        return NGX_DECLINED;
    }

    return ngx_shinsei_session_hex(r->pool, ctx->session.hash, hex);
}


/*
 * At login the session gets a new ID (OWASP ASVS 3.2.1): the caller's SQL
 * deletes the row of *old and inserts one under *fresh.
 */

ngx_int_t
ngx_shinsei_session_rotate(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *old, ngx_str_t *fresh)
{
    ngx_str_t               id;
    ngx_shinsei_session_t  *ss;

    ss = &ctx->session;

    if (ss->id.len) {
        ngx_shinsei_session_cache_forget(ss->hash);

        if (ngx_shinsei_session_hex(r->pool, ss->hash, old) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        ngx_str_set(old, "");
    }

    if (ngx_shinsei_crypto_token(r->pool, &id, fresh) != NGX_OK) {
        return NGX_ERROR;
    }

    ss->id = id;
    ngx_shinsei_session_hash(&ss->id, ss->hash);
    ss->created_now = 1;
    ss->valid = 1;

    return ngx_shinsei_session_derive_csrf(r, ctx);
}


/* the caller's SQL deletes the session row: the cookie goes too */

ngx_int_t
ngx_shinsei_session_end(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *hash)
{
    ngx_shinsei_session_t  *ss;

    ss = &ctx->session;

    if (ss->id.len == 0) {
        ngx_str_set(hash, "");
        return NGX_OK;
    }

    ngx_shinsei_session_cache_forget(ss->hash);

    if (ngx_shinsei_session_hex(r->pool, ss->hash, hash) != NGX_OK) {
        return NGX_ERROR;
    }

    ss->ended = 1;
    ss->created_now = 0;
    ss->valid = 0;
    ss->user_id = 0;

    return NGX_OK;
}


/*
 * The sessions a statement changed or deleted (their hashes in hex,
 * separated by spaces, in one column): forgotten here at once; the other
 * workers and nodes learn it from the NOTIFY of the same change.
 */

void
ngx_shinsei_session_forget(PGresult *res, int row, int col)
{
    u_char  *p;

    if (row >= PQntuples(res) || col >= PQnfields(res)
        || PQgetisnull(res, row, col))
    {
        return;
    }

    p = (u_char *) PQgetvalue(res, row, col);

    ngx_shinsei_session_cache_forget_hex(p, p + PQgetlength(res, row, col));
}


static ngx_int_t
ngx_shinsei_session_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    ngx_shinsei_session_t  *ss;

    ss = &ctx->session;

    if (PQntuples(res) != 1 || PQnfields(res) != 7) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      ngx_shinsei_log_prefix "the session statement of "
                      "\"%V\" does not answer 7 columns", &ctx->app->name);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (PQgetvalue(res, 0, 0)[0] == 't') {
        ss->valid = 1;

        if (!PQgetisnull(res, 0, 1)) {
            ss->user_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                    PQgetlength(res, 0, 1));
        }

        ss->level = ngx_atoi((u_char *) PQgetvalue(res, 0, 2),
                             PQgetlength(res, 0, 2));
        ss->created = ngx_atotm((u_char *) PQgetvalue(res, 0, 3),
                                PQgetlength(res, 0, 3));
        ss->seen = ngx_atotm((u_char *) PQgetvalue(res, 0, 4),
                             PQgetlength(res, 0, 4));

        if (ss->level == (ngx_uint_t) NGX_ERROR
            || ss->created == NGX_ERROR || ss->seen == NGX_ERROR)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ss->user_id <= 0) {
            ss->user_id = 0;
            ss->level = NGX_SHINSEI_AUTH_NONE;
        }

        if (ngx_shinsei_db_value(r, res, 0, 5, &ss->profile) == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        ss->expired = ss->id.len ? 1 : 0;
        ngx_str_null(&ss->id);

        if (PQgetvalue(res, 0, 6)[0] != 't') {
            return NGX_DECLINED;
        }

        ss->id = ss->new_id;
        ngx_shinsei_session_hash(&ss->id, ss->hash);
        ss->valid = 1;
        ss->created_now = 1;
        ss->created = ngx_time();
        ss->seen = ss->created;
    }

    ngx_shinsei_session_cache_put(ss, ctx->app->kind, &ctx->tenant->code);

    return ngx_shinsei_session_user(r, ctx);
}


/* who is logged in, for the page header; and the session's CSRF token */

static ngx_int_t
ngx_shinsei_session_user(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_shinsei_session_t  *ss;

    ss = &ctx->session;

    if (ss->user_id
        && (ngx_shinsei_session_profile(r, ctx, "name_enc",
                                        "citizens.name_enc",
                                        &ss->name) == NGX_ERROR
            || ngx_shinsei_session_profile(r, ctx, "email_enc",
                                           "citizens.email_enc",
                                           &ss->email) == NGX_ERROR))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_shinsei_session_derive_csrf(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * The Cookie header, parsed strictly (RFC 6265 5.4, 4.2.1): pairs split
 * on ";" only, the name matched exactly, case included.  Two values for
 * our name are no session at all: a sibling domain may have planted one
 * (Domain= the parent), and whichever a browser sends first is not ours
 * to guess.  NGX_DECLINED when there is none.
 */

static ngx_int_t
ngx_shinsei_session_cookie_value(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char            *p, *last, *semi, *eq, *n, *nlast;
    ngx_uint_t         i, found;
    ngx_table_elt_t  **h;

    ngx_str_null(value);
    found = 0;

    h = r->headers_in.cookies.elts;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {

        p = h[i]->value.data;
        last = p + h[i]->value.len;

        while (p < last) {

            semi = ngx_strlchr(p, last, ';');
            if (semi == NULL) {
                semi = last;
            }

            n = p;
            while (n < semi && (*n == ' ' || *n == '\t')) {
                n++;
            }

            eq = ngx_strlchr(n, semi, '=');

            if (eq) {
                nlast = eq;
                while (nlast > n && (nlast[-1] == ' ' || nlast[-1] == '\t'))
                {
                    nlast--;
                }

                if ((size_t) (nlast - n) == name->len
                    && ngx_strncmp(n, name->data, name->len) == 0)
                {
                    if (found++) {
                        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                                      ngx_shinsei_log_prefix "two session "
                                      "cookies: neither is used");
                        ngx_str_null(value);
                        return NGX_DECLINED;
                    }

                    value->data = eq + 1;
                    value->len = semi - value->data;

                    while (value->len
                           && (value->data[0] == ' '
                               || value->data[0] == '\t'))
                    {
                        value->data++;
                        value->len--;
                    }

                    while (value->len
                           && (value->data[value->len - 1] == ' '
                               || value->data[value->len - 1] == '\t'))
                    {
                        value->len--;
                    }
                }
            }

            p = semi + 1;
        }
    }

    return found ? NGX_OK : NGX_DECLINED;
}


/* a new session, or an ended one: the cookie says so */

static ngx_int_t
ngx_shinsei_session_header_filter(ngx_http_request_t *r)
{
    u_char                 *p;
    size_t                  len;
    ngx_str_t               value, *name;
    ngx_uint_t              insecure;
    ngx_shinsei_ctx_t      *ctx;
    ngx_shinsei_session_t  *ss;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    if (ctx == NULL || ctx->app == NULL || r != r->main
        || ctx->app->cookie.len == 0)
    {
        return ngx_shinsei_session_next_header(r);
    }

    ss = &ctx->session;

    if (!ss->created_now && !ss->ended) {
        return ngx_shinsei_session_next_header(r);
    }

    insecure = ngx_shinsei_session_insecure(r);
    name = ngx_shinsei_session_cookie_name(r, ctx);

    len = name->len + 1 + ss->id.len
          + sizeof("; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax") - 1;

    value.data = ngx_pnalloc(r->pool, len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    if (ss->ended) {
        p = ngx_sprintf(value.data, "%V=; Max-Age=0; Path=/", name);

    } else {
        p = ngx_sprintf(value.data, "%V=%V; Path=/", name, &ss->id);
    }

    if (!insecure) {
        p = ngx_cpymem(p, "; Secure", 8);
    }

    p = ngx_cpymem(p, "; HttpOnly; SameSite=Lax", 24);

    value.len = p - value.data;

    if (ngx_shinsei_response_header(r, "Set-Cookie", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_shinsei_session_next_header(r);
}


static ngx_uint_t
ngx_shinsei_session_same_origin(ngx_http_request_t *r)
{
    ngx_str_t  *site;

    site = ngx_shinsei_request_header(r, "Sec-Fetch-Site");

    return site && site->len == 11
           && ngx_strncasecmp(site->data, (u_char *) "same-origin", 11) == 0;
}


static ngx_str_t *
ngx_shinsei_session_cookie_name(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_session_insecure(r) ? &ctx->app->cookie_plain
                                           : &ctx->app->cookie;
}


static ngx_uint_t
ngx_shinsei_session_insecure(ngx_http_request_t *r)
{
    struct sockaddr_in       *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6      *sin6;
#endif
    ngx_shinsei_srv_conf_t   *sscf;

    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);

    if (!sscf->insecure_cookie) {
        return 0;
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        return 0;
    }
#endif

    /* plain-http cookies are for the loopback demo and tests only */

    switch (r->connection->sockaddr->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) r->connection->sockaddr;
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) r->connection->sockaddr;
        return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
#endif

    default:
        return 0;
    }
}


static ngx_int_t
ngx_shinsei_session_derive_csrf(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx)
{
    u_char     *p, input[13 + NGX_SHINSEI_SESSION_ID_LEN];
    u_char      digest[SHA256_DIGEST_LENGTH];
    ngx_str_t   src, dst;

    if (!ctx->session.valid) {
        return NGX_OK;
    }

    dst.data = ngx_pnalloc(r->pool, NGX_SHINSEI_SESSION_ID_LEN);
    if (dst.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(input, "shinsei-csrf:", 13);
    p = ngx_cpymem(p, ctx->session.id.data,
                   ngx_min(ctx->session.id.len, NGX_SHINSEI_SESSION_ID_LEN));

    (void) EVP_Digest(input, p - input, digest, NULL, EVP_sha256(), NULL);

    src.data = digest;
    src.len = sizeof(digest);

    ngx_encode_base64url(&dst, &src);

    ctx->session.csrf = dst;

    return NGX_OK;
}


static void
ngx_shinsei_session_hash(ngx_str_t *id, u_char *hash)
{
    (void) EVP_Digest(id->data, id->len, hash, NULL, EVP_sha256(), NULL);
}


static ngx_int_t
ngx_shinsei_session_hex(ngx_pool_t *pool, u_char *hash, ngx_str_t *hex)
{
    hex->data = ngx_pnalloc(pool, 64);
    if (hex->data == NULL) {
        return NGX_ERROR;
    }

    hex->len = ngx_hex_dump(hex->data, hash, 32) - hex->data;

    return NGX_OK;
}


/*
 * To the login page, and back here after it: "next" is this page (a GET
 * only; a refused POST comes back to its form's page).
 */

static ngx_int_t
ngx_shinsei_session_login_redirect(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx)
{
    u_char     *p;
    size_t      len, plen;
    uintptr_t   escape;
    ngx_str_t   location;

    escape = ngx_escape_uri(NULL, r->uri.data, r->uri.len, NGX_ESCAPE_ARGS);
    plen = ngx_strlen(ctx->app->login_path);

    len = plen + sizeof("?next=") - 1 + r->uri.len + 2 * escape
          + sizeof("&expired=1") - 1;

    location.data = ngx_pnalloc(r->pool, len);
    if (location.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(location.data, ctx->app->login_path, plen);
    p = ngx_cpymem(p, "?next=", sizeof("?next=") - 1);
    p = (u_char *) ngx_escape_uri(p, r->uri.data, r->uri.len,
                                  NGX_ESCAPE_ARGS);

    if (ctx->session.expired) {
        p = ngx_cpymem(p, "&expired=1", sizeof("&expired=1") - 1);
    }

    location.len = p - location.data;

    return ngx_shinsei_response_redirect(r, &location);
}


