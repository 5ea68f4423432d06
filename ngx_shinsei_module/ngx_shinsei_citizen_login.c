
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Login and logout (ログイン / ログアウト).
 *
 * The same answer for an unknown address and a wrong password, after the
 * same work (a hash is computed either way).  After 5 failures within 15
 * minutes an account refuses further attempts for a growing pause (30 s,
 * doubling, at most 15 minutes) without checking them, and its owner is
 * told by mail (OWASP ASVS 4.0.3 2.2.1); nginx's limit_req limits each
 * address (conf/).  At login the session gets a new ID.
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_form.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_session.h"
#include "ngx_shinsei_citizen_account.h"


typedef struct {
    ngx_str_t                  id;
    ngx_str_t                  name;
    ngx_str_t                  index;        /* of the address, hex */
    ngx_uint_t                 failures;     /* before this attempt */
    unsigned                   short_password:1;
    unsigned                   exists:1;
    unsigned                   verified:1;
} ngx_shinsei_login_t;


static ngx_int_t ngx_shinsei_login_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_login_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_login_found(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_login_checked(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);
static ngx_int_t ngx_shinsei_login_failed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_login_ok(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_logout_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_logout_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_logout_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_login_next(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);


ngx_shinsei_route_t  ngx_shinsei_login_routes[] = {

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/login"),
      ngx_shinsei_login_form, NGX_SHINSEI_ROUTE_SESSION, NULL },

    { NGX_HTTP_POST, ngx_string("/login"),
      ngx_shinsei_login_post, NGX_SHINSEI_ROUTE_SESSION,
      ngx_shinsei_login_form },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/logout"),
      ngx_shinsei_logout_page, NGX_SHINSEI_ROUTE_SESSION, NULL },

    { NGX_HTTP_POST, ngx_string("/logout"),
      ngx_shinsei_logout_post, NGX_SHINSEI_ROUTE_SESSION,
      ngx_shinsei_logout_page },

    ngx_shinsei_null_route
};


static ngx_shinsei_field_def_t  ngx_shinsei_login_fields[] = {
    { "email", "メールアドレス", NULL, "email", "username",
      NGX_SHINSEI_FIELD_REQUIRED|NGX_SHINSEI_FIELD_LINE
      |NGX_SHINSEI_FIELD_EMAIL, 254 },
    ngx_shinsei_field_current_password("password", "パスワード"),
    ngx_shinsei_null_field
};


static const char  ngx_shinsei_login_msg_failed[] =
    "メールアドレスまたはパスワードが正しくありません";

/*
 * One row whether the address has an account or not: the pause and the
 * failures (login_attempt() counts this attempt), then the account.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_login_lookup_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT a.paused, a.failures, c.id, c.password_hash,"
    " c.verified_at IS NOT NULL, c.name_enc"
    " FROM login_attempt($1, decode($2, 'hex')) a"
    " LEFT JOIN citizens c"
    "  ON c.city = $1 AND c.email_index = decode($2, 'hex')");


/*
 * $3 the hash of the session to drop (or ''), $4 of the new one, $5 the
 * password hash upgraded to the current cost (or ''), $6 the address's
 * index: the attempt counted before the check is removed, with the rest.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_login_ok_stmt =
    ngx_shinsei_pg_stmt(
    "WITH old AS (DELETE FROM sessions"
    "  WHERE id_hash = decode($3, 'hex') AND city = $1),"
    " f AS (DELETE FROM login_failures"
    "  WHERE city = $1 AND email_index = decode($6, 'hex')),"
    " up AS (UPDATE citizens SET password_hash = $5, updated_at = now()"
    "  WHERE id = $2::bigint AND city = $1 AND $5 <> '')"
    " INSERT INTO sessions (id_hash, city, kind, citizen_id, auth_level,"
    "  authenticated_at)"
    " VALUES (decode($4, 'hex'), $1, 'citizen', $2::bigint, 1, now())");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_logout_stmt =
    ngx_shinsei_pg_stmt(
    "DELETE FROM sessions WHERE id_hash = decode($1, 'hex') AND city = $2");


static ngx_int_t
ngx_shinsei_login_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    cJSON      *view;
    ngx_str_t  *next;

    next = ngx_shinsei_body_field(r->method == NGX_HTTP_POST ? ctx->form
                                                              : ctx->args,
                                  "next");

    if (next && ngx_shinsei_form_safe_path(next) == NGX_OK) {
        view = ngx_shinsei_response_view(r, ctx);

        if (view == NULL
            || cJSON_AddStringToObject(view, "next",
                                       ngx_shinsei_string_cstr(r->pool, next))
               == NULL)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_shinsei_form_render(r, ctx, ngx_shinsei_login_fields,
                                   "login", 0);
}


static ngx_int_t
ngx_shinsei_login_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t             rc;
    ngx_str_t             p[2];
    ngx_shinsei_login_t  *lg;

    rc = ngx_shinsei_form_check(r, ctx, ngx_shinsei_login_fields);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_login_form(r, ctx);
    }

    lg = ngx_pcalloc(r->pool, sizeof(ngx_shinsei_login_t));
    if (lg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = lg;

    if (ngx_shinsei_crypto_blind_index(r->pool,
                                       ngx_shinsei_form_value(ctx, "email"),
                                       &lg->index)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p[0] = ctx->tenant->code;
    p[1] = lg->index;

    return ngx_shinsei_db_query(r, &ngx_shinsei_login_lookup_stmt, p, 2,
                                ngx_shinsei_login_found, 0);
}


static ngx_int_t
ngx_shinsei_login_found(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    u_char                aad[NGX_SHINSEI_AAD_LEN];
    ngx_int_t             rc;
    ngx_str_t             stored, *password;
    ngx_shinsei_login_t  *lg;

    lg = ctx->data;
    password = ngx_shinsei_form_value(ctx, "password");

    /* the same answer, paused or not, with or without an account */

    rc = ngx_shinsei_account_paused(r, ctx, res, 0, &lg->failures);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_login_form(r, ctx);
    }

    if (PQgetisnull(res, 0, 2)) {
        /* no such account: the same hashing, then the same answer */
        return ngx_shinsei_crypto_password_verify(r, password, NULL,
                                                  ngx_shinsei_login_checked);
    }

    lg->exists = 1;
    lg->verified = PQgetvalue(res, 0, 4)[0] == 't';

    /* no password yet (never verified): the same work, and a refusal */

    if (ngx_shinsei_db_value(r, res, 0, 2, &lg->id) != NGX_OK
        || ngx_shinsei_db_value(r, res, 0, 3, &stored) == NGX_ERROR
        || ngx_shinsei_db_decrypt(r, res, 0, 5,
                                  ngx_shinsei_crypto_aad(aad,
                                                         "citizens.name_enc",
                                                         &lg->id),
                                  &lg->name)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_crypto_password_verify(r, password,
                                              stored.len ? &stored : NULL,
                                              ngx_shinsei_login_checked);
}


static ngx_int_t
ngx_shinsei_login_checked(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_password_t *pw)
{
    ngx_str_t             p[6], *email;
    ngx_shinsei_login_t  *lg;

    lg = ctx->data;
    email = ngx_shinsei_form_value(ctx, "email");

    p[0] = ctx->tenant->code;
    p[1] = lg->id;

    /*
     * An account never verified has no password: it cannot log in, and
     * its address, not confirmed, gets no mail about the failures.
     */

    if (!pw->verified || !lg->verified) {
        return ngx_shinsei_account_failed(r, ctx, lg->failures,
                                          lg->verified ? &lg->id : NULL,
                                          email, &lg->name,
                                          ngx_shinsei_login_failed);
    }

    if (ngx_shinsei_session_rotate(r, ctx, &p[2], &p[3]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lg->short_password = pw->short_password;
    p[4] = pw->hash;
    p[5] = lg->index;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  ngx_shinsei_log_prefix "citizen %V logged in", &lg->id);

    return ngx_shinsei_db_query(r, &ngx_shinsei_login_ok_stmt, p, 6,
                                ngx_shinsei_login_ok, 0);
}


static ngx_int_t
ngx_shinsei_login_failed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    if (ngx_shinsei_form_error(r, ctx, NULL, ngx_shinsei_login_msg_failed)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_login_form(r, ctx);
}


static ngx_int_t
ngx_shinsei_login_ok(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_login_next(r, ctx);
}


static ngx_int_t
ngx_shinsei_logout_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    if (ctx->session.user_id == 0) {
        return ngx_shinsei_response_redirect_to(r, "/login");
    }

    return ngx_shinsei_response_render(r, ctx, "logout", NGX_HTTP_OK);
}


static ngx_int_t
ngx_shinsei_logout_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  p[2];

    if (ngx_shinsei_session_end(r, ctx, &p[0]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p[1] = ctx->tenant->code;

    return ngx_shinsei_db_query(r, &ngx_shinsei_logout_stmt, p, 2,
                                ngx_shinsei_logout_done, 0);
}


static ngx_int_t
ngx_shinsei_logout_done(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_response_redirect_to(r, "/login?m=logged_out");
}


/*
 * back where the resident was going: same-site paths only; a password
 * shorter than the rules of today is to be changed first (finding 3)
 */

static ngx_int_t
ngx_shinsei_login_next(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t            *next;
    ngx_shinsei_login_t  *lg;

    lg = ctx->data;

    if (lg->short_password) {
        return ngx_shinsei_response_redirect_to(r,
                                       "/mypage/password?m=password_short");
    }

    next = ngx_shinsei_form_value(ctx, "next");

    if (next && ngx_shinsei_form_safe_path(next) == NGX_OK) {
        return ngx_shinsei_response_redirect(r, next);
    }

    return ngx_shinsei_response_redirect_to(r, "/mypage");
}
