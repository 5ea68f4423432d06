
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
static void ngx_shinsei_session_hash_hex(ngx_str_t *id, u_char *hex);
static void ngx_shinsei_session_cleanup(void *data);


static ngx_str_t  ngx_shinsei_session_cookie_secure =
    ngx_string("__Host-sid");
static ngx_str_t  ngx_shinsei_session_cookie_plain = ngx_string("sid");


/*
 * $1 the hash of the presented ID (or ''), $2 the city, $3 and $4 the idle
 * and absolute lifetimes in seconds, $5 the hash of a new ID to create a
 * session under when there is no live one (or '' for none).  The touch is
 * written at most once a minute.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_session_stmt =
    ngx_shinsei_pg_stmt(
    "WITH old AS ("
    "  SELECT id_hash, citizen_id, flash,"
    "         last_seen_at > now() - make_interval(secs => $3::int)"
    "         AND created_at > now() - make_interval(secs => $4::int)"
    "         AS live"
    "  FROM sessions WHERE id_hash = decode($1, 'hex') AND city = $2"
    "), touch AS ("
    "  UPDATE sessions s SET last_seen_at = now(), flash = NULL"
    "  FROM old WHERE s.id_hash = old.id_hash AND old.live"
    "  AND (s.last_seen_at < now() - interval '60 seconds'"
    "       OR s.flash IS NOT NULL)"
    "), fresh AS ("
    "  INSERT INTO sessions (id_hash, city)"
    "  SELECT decode($5, 'hex'), $2"
    "  WHERE $5 <> '' AND NOT EXISTS (SELECT 1 FROM old WHERE live)"
    "  RETURNING 1"
    ")"
    " SELECT coalesce((SELECT live FROM old), false),"
    " (SELECT citizen_id FROM old WHERE live),"
    " (SELECT flash FROM old WHERE live),"
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

        params[0].data = ngx_pnalloc(r->pool, 64);
        if (params[0].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_shinsei_session_hash_hex(&ctx->session.id, params[0].data);
        params[0].len = 64;

    } else if (!(ctx->route->flags & NGX_SHINSEI_ROUTE_SESSION)) {
        /* an anonymous visit to a page without forms costs no query */
        ctx->session_done = 1;
        return NGX_OK;
    }

    if (ctx->route->flags & NGX_SHINSEI_ROUTE_SESSION) {
        if (ngx_shinsei_session_new_id(r->pool, &new_id, &new_hash)
            != NGX_OK)
        {
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

    if (ctx->session.flash
        && cJSON_AddItemReferenceToObject(site, "flash", ctx->session.flash)
           == 0)
    {
        return NGX_ERROR;
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

    if (!ctx->session.created) {
        return NGX_OK;
    }

    insecure = ngx_shinsei_session_insecure(r);
    name = insecure ? &ngx_shinsei_session_cookie_plain
                    : &ngx_shinsei_session_cookie_secure;

    len = name->len + 1 + ctx->session.id.len
          + sizeof("; Path=/; Secure; HttpOnly; SameSite=Lax") - 1;

    value.data = ngx_pnalloc(r->pool, len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(value.data, "%V=%V; Path=/", name, &ctx->session.id);

    if (!insecure) {
        p = ngx_cpymem(p, "; Secure", 8);
    }

    p = ngx_cpymem(p, "; HttpOnly; SameSite=Lax", 24);

    value.len = p - value.data;

    return ngx_shinsei_add_header(r, "Set-Cookie", &value);
}


ngx_int_t
ngx_shinsei_session_new_id(ngx_pool_t *pool, ngx_str_t *id,
    ngx_str_t *hash_hex)
{
    u_char     raw[32];
    ngx_str_t  src;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return NGX_ERROR;
    }

    id->data = ngx_pnalloc(pool, ngx_base64_encoded_length(sizeof(raw)));
    hash_hex->data = ngx_pnalloc(pool, 64);

    if (id->data == NULL || hash_hex->data == NULL) {
        return NGX_ERROR;
    }

    src.data = raw;
    src.len = sizeof(raw);

    ngx_encode_base64url(id, &src);
    ngx_explicit_memzero(raw, sizeof(raw));

    ngx_shinsei_session_hash_hex(id, hash_hex->data);
    hash_hex->len = 64;

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_session_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    ngx_pool_cleanup_t     *cln;
    ngx_shinsei_session_t  *s;

    s = &ctx->session;

    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (PQgetvalue(res, 0, 0)[0] == 't') {
        s->valid = 1;

        if (!PQgetisnull(res, 0, 1)) {
            s->citizen_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                      PQgetlength(res, 0, 1));
        }

        if (!PQgetisnull(res, 0, 2)) {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            s->flash = ngx_shinsei_db_json(res, 0, 2);
            cln->handler = ngx_shinsei_session_cleanup;
            cln->data = s->flash;
        }

    } else {
        s->expired = s->id.len ? 1 : 0;
        ngx_str_null(&s->id);

        if (PQgetvalue(res, 0, 3)[0] == 't') {
            s->id = s->new_id;
            s->valid = 1;
            s->created = 1;
        }
    }

    if (s->valid) {
        s->csrf.data = ngx_pnalloc(r->pool, NGX_SHINSEI_SESSION_ID_LEN);
        if (s->csrf.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_shinsei_session_csrf(&s->id, s->csrf.data);
        s->csrf.len = NGX_SHINSEI_SESSION_ID_LEN;
    }

    ctx->session_done = 1;

    return ngx_shinsei_continue(r, ctx);
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


static void
ngx_shinsei_session_hash_hex(ngx_str_t *id, u_char *hex)
{
    u_char  digest[SHA256_DIGEST_LENGTH];

    (void) EVP_Digest(id->data, id->len, digest, NULL, EVP_sha256(), NULL);

    ngx_hex_dump(hex, digest, sizeof(digest));
}


static void
ngx_shinsei_session_cleanup(void *data)
{
    cJSON_Delete(data);
}
