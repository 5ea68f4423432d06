
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Sessions live in the sessions table, keyed by the SHA-256 of a 256-bit
 * random ID that only the browser holds (cookie "__Host-sid": Secure,
 * HttpOnly, SameSite=Lax).  The CSRF token of a session is derived from
 * its ID, so it needs no storage and changes when the ID does.  Loading a
 * session, touching it and, for pages with forms, making a new one are one
 * SQL statement.
 */


#include "ngx_shinsei_session.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_form.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_router.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>


static ngx_int_t ngx_shinsei_session_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_uint_t ngx_shinsei_session_insecure(ngx_http_request_t *r);
static void ngx_shinsei_session_csrf(ngx_str_t *id, u_char *token);
static ngx_int_t ngx_shinsei_session_derive_csrf(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);



static ngx_str_t  ngx_shinsei_session_cookie_secure =
    ngx_string("__Host-sid");
static ngx_str_t  ngx_shinsei_session_cookie_plain = ngx_string("sid");


/*
 * $1 the hash of the presented ID (or ''), $2 the city, $3 and $4 the idle
 * and absolute lifetimes in seconds, $5 the hash of a new ID to create a
 * session under when there is no live one (or '' for none).  The touch is
 * written at most once a minute.  A logged-in session brings its
 * resident's name and address (encrypted) for the page header.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_session_stmt =
    ngx_shinsei_pg_stmt(
    "WITH old AS ("
    "  SELECT s.id_hash, s.citizen_id, c.name_enc, c.email_enc,"
    "         s.last_seen_at > now() - make_interval(secs => $3::int)"
    "         AND s.created_at > now() - make_interval(secs => $4::int)"
    "         AS live"
    "  FROM sessions s"
    "  LEFT JOIN citizens c ON c.id = s.citizen_id AND c.city = s.city"
    "  WHERE s.id_hash = decode($1, 'hex') AND s.city = $2"
    "), touch AS ("
    "  UPDATE sessions s SET last_seen_at = now()"
    "  FROM old WHERE s.id_hash = old.id_hash AND old.live"
    "  AND s.last_seen_at < now() - interval '60 seconds'"
    "), fresh AS ("
    "  INSERT INTO sessions (id_hash, city)"
    "  SELECT decode($5, 'hex'), $2"
    "  WHERE $5 <> '' AND NOT EXISTS (SELECT 1 FROM old WHERE live)"
    "  RETURNING 1"
    ")"
    " SELECT coalesce((SELECT live FROM old), false),"
    " (SELECT citizen_id FROM old WHERE live),"
    " (SELECT name_enc FROM old WHERE live),"
    " (SELECT email_enc FROM old WHERE live),"
    " EXISTS (SELECT 1 FROM fresh)");


ngx_int_t
ngx_shinsei_session_load(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    u_char                   *p;
    ngx_str_t                 name, value, params[5], new_id, new_hash;
    ngx_shinsei_srv_conf_t   *sscf;
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_shinsei_module);
    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);

    name = ngx_shinsei_session_insecure(r)
           ? ngx_shinsei_session_cookie_plain
           : ngx_shinsei_session_cookie_secure;

    ngx_str_null(&value);

    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies, &name,
                                          &value)
        == NGX_DECLINED
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
        ctx->session.id.data = ngx_pstrdup(r->pool, &value);
        if (ctx->session.id.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->session.id.len = value.len;

        if (ngx_shinsei_token_hash(r->pool, &ctx->session.id, &params[0])
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (!(ctx->route->flags & NGX_SHINSEI_ROUTE_SESSION)) {
        /* an anonymous visit to a page without forms costs no query */
        ctx->session_done = 1;
        return NGX_OK;
    }

    if (ctx->route->flags & NGX_SHINSEI_ROUTE_SESSION) {
        if (ngx_shinsei_token(r->pool, &new_id, &new_hash) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->session.new_id = new_id;
        params[4] = new_hash;
    }

    params[1] = sscf->tenant;

    params[2].data = ngx_pnalloc(r->pool, 2 * NGX_TIME_T_LEN);
    if (params[2].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[2].len = ngx_sprintf(params[2].data, "%T", smcf->session_idle)
                    - params[2].data;
    params[3].data = params[2].data + params[2].len;
    params[3].len = ngx_sprintf(params[3].data, "%T", smcf->session_absolute)
                    - params[3].data;

    return ngx_shinsei_db_query(r, &ngx_shinsei_session_stmt, params, 5,
                                ngx_shinsei_session_loaded, 0);
}


ngx_uint_t
ngx_shinsei_session_csrf_ok(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  *token;

    if (!ctx->session.valid || ctx->session.created) {
        return 0;
    }

    token = ngx_shinsei_field(ctx->form, "_csrf");

    if (token == NULL || token->len != ctx->session.csrf.len) {
        return 0;
    }

    return CRYPTO_memcmp(token->data, ctx->session.csrf.data, token->len)
           == 0;
}


ngx_int_t
ngx_shinsei_session_view(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    cJSON *site)
{
    u_char  *csrf;
    cJSON   *user;

    if (ctx->session.valid) {
        csrf = ngx_pnalloc(r->pool, ctx->session.csrf.len + 1);
        if (csrf == NULL) {
            return NGX_ERROR;
        }

        *ngx_cpymem(csrf, ctx->session.csrf.data, ctx->session.csrf.len)
            = '\0';

        if (cJSON_AddStringToObject(site, "csrf", (char *) csrf) == NULL) {
            return NGX_ERROR;
        }
    }

    if (ctx->csrf_done && !ctx->csrf_ok
        && cJSON_AddTrueToObject(site, "csrf_error") == NULL)
    {
        return NGX_ERROR;
    }

    if (ctx->session.expired
        && cJSON_AddTrueToObject(site, "session_expired") == NULL)
    {
        return NGX_ERROR;
    }

    if (ctx->session.citizen_id) {
        user = cJSON_AddObjectToObject(site, "user");

        if (user == NULL
            || cJSON_AddStringToObject(user, "name",
                                       ngx_shinsei_cstr(r->pool,
                                                        &ctx->session.name))
               == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_session_cookie(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   value, *name;
    ngx_uint_t  insecure;

    if (!ctx->session.created && !ctx->session.ended) {
        return NGX_OK;
    }

    insecure = ngx_shinsei_session_insecure(r);
    name = insecure ? &ngx_shinsei_session_cookie_plain
                    : &ngx_shinsei_session_cookie_secure;

    len = name->len + 1 + ctx->session.id.len
          + sizeof("; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax") - 1;

    value.data = ngx_pnalloc(r->pool, len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    if (ctx->session.ended) {
        p = ngx_sprintf(value.data, "%V=; Max-Age=0; Path=/", name);

    } else {
        p = ngx_sprintf(value.data, "%V=%V; Path=/", name, &ctx->session.id);
    }

    if (!insecure) {
        p = ngx_cpymem(p, "; Secure", 8);
    }

    p = ngx_cpymem(p, "; HttpOnly; SameSite=Lax", 24);

    value.len = p - value.data;

    return ngx_shinsei_add_header(r, "Set-Cookie", &value);
}


/*
 * At login the session gets a new ID (OWASP ASVS 3.2.1): the caller's SQL
 * deletes the row of *old and inserts one under *fresh.
 */

ngx_int_t
ngx_shinsei_session_rotate(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *old, ngx_str_t *fresh)
{
    ngx_str_t  id;

    if (ctx->session.id.len) {
        if (ngx_shinsei_token_hash(r->pool, &ctx->session.id, old)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        ngx_str_set(old, "");
    }

    if (ngx_shinsei_token(r->pool, &id, fresh) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->session.id = id;
    ctx->session.created = 1;
    ctx->session.valid = 1;

    return ngx_shinsei_session_derive_csrf(r, ctx);
}


/* the caller's SQL deletes the session row: the cookie goes too */

ngx_int_t
ngx_shinsei_session_end(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *hash)
{
    if (ctx->session.id.len == 0) {
        ngx_str_set(hash, "");
        return NGX_OK;
    }

    if (ngx_shinsei_token_hash(r->pool, &ctx->session.id, hash) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->session.ended = 1;
    ctx->session.created = 0;
    ctx->session.valid = 0;
    ctx->session.citizen_id = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_session_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    ngx_shinsei_session_t  *s;

    s = &ctx->session;

    if (PQntuples(res) != 1 || PQnfields(res) != 5) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (PQgetvalue(res, 0, 0)[0] == 't') {
        s->valid = 1;

        if (!PQgetisnull(res, 0, 1)) {
            s->citizen_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                      PQgetlength(res, 0, 1));

            if (ngx_shinsei_db_decrypt(r, res, 0, 2, "name", &s->name)
                != NGX_OK
                || ngx_shinsei_db_decrypt(r, res, 0, 3, "email", &s->email)
                   != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

    } else {
        s->expired = s->id.len ? 1 : 0;
        ngx_str_null(&s->id);

        if (PQgetvalue(res, 0, 4)[0] == 't') {
            s->id = s->new_id;
            s->valid = 1;
            s->created = 1;
        }
    }

    if (s->valid && ngx_shinsei_session_derive_csrf(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->session_done = 1;

    return ngx_shinsei_continue(r, ctx);
}


static ngx_int_t
ngx_shinsei_session_derive_csrf(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx)
{
    ctx->session.csrf.data = ngx_pnalloc(r->pool,
                                         NGX_SHINSEI_SESSION_ID_LEN);
    if (ctx->session.csrf.data == NULL) {
        return NGX_ERROR;
    }

    ngx_shinsei_session_csrf(&ctx->session.id, ctx->session.csrf.data);
    ctx->session.csrf.len = NGX_SHINSEI_SESSION_ID_LEN;

    return NGX_OK;
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


static void
ngx_shinsei_session_csrf(ngx_str_t *id, u_char *token)
{
    u_char     *p, input[13 + NGX_SHINSEI_SESSION_ID_LEN];
    u_char      digest[SHA256_DIGEST_LENGTH];
    ngx_str_t   src, dst;

    p = ngx_cpymem(input, "shinsei-csrf:", 13);
    p = ngx_cpymem(p, id->data, ngx_min(id->len, NGX_SHINSEI_SESSION_ID_LEN));

    (void) EVP_Digest(input, p - input, digest, NULL, EVP_sha256(), NULL);

    src.data = digest;
    src.len = sizeof(digest);
    dst.data = token;

    ngx_encode_base64url(&dst, &src);
}
