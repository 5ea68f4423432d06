
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Sign-up (新規登録) and the verification of the address (REQ U-AUTH-1).
 *
 * The page after sign-up is the same whether the address was new or
 * already had an account: the owner of the address learns which by mail,
 * nobody else does.  The verification link leads to a page with a button,
 * so a mail scanner opening the link does not spend it.
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_form.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_citizen_account.h"


static ngx_int_t ngx_shinsei_signup_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_signup_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_signup_hashed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);
static ngx_int_t ngx_shinsei_signup_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_signup_sent(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_verify_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_verify_state(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_verify_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_verify_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);


ngx_shinsei_route_t  ngx_shinsei_signup_routes[] = {

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/signup"),
      ngx_shinsei_signup_form, NGX_SHINSEI_ROUTE_SESSION, NULL },

    { NGX_HTTP_POST, ngx_string("/signup"),
      ngx_shinsei_signup_post, NGX_SHINSEI_ROUTE_SESSION,
      ngx_shinsei_signup_form },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/signup/sent"),
      ngx_shinsei_signup_sent, 0, NULL },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/verify"),
      ngx_shinsei_verify_page, NGX_SHINSEI_ROUTE_SESSION, NULL },

    { NGX_HTTP_POST, ngx_string("/verify"),
      ngx_shinsei_verify_post, NGX_SHINSEI_ROUTE_SESSION,
      ngx_shinsei_verify_page },

    ngx_shinsei_null_route
};


static ngx_shinsei_field_def_t  ngx_shinsei_signup_fields[] = {
    ngx_shinsei_field_name,
    ngx_shinsei_field_name_kana,
    ngx_shinsei_field_email("メールアドレス",
                            "確認のためのメールをお送りします"),
    ngx_shinsei_field_new_password("パスワード"),
    ngx_shinsei_null_field
};


static ngx_shinsei_pg_stmt_t  ngx_shinsei_signup_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT citizen_signup($1, decode($2, 'hex'), $3, $4, $5, $6,"
    " decode($7, 'hex'), $8::jsonb, $9::jsonb)");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_verify_state_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT token_state($1, 'verify', decode($2, 'hex'))");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_verify_stmt =
    ngx_shinsei_pg_stmt(
    "WITH t AS (SELECT * FROM use_token($1, 'verify', decode($2, 'hex'))),"
    " v AS (UPDATE citizens SET verified_at = coalesce(verified_at, now()),"
    "  updated_at = now()"
    "  WHERE id = (SELECT citizen_id FROM t) AND city = $1 RETURNING id)"
    " SELECT status, (SELECT count(*) FROM v) FROM t");


static ngx_int_t
ngx_shinsei_signup_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_form_render(r, ctx, ngx_shinsei_signup_fields,
                                   "signup", 0);
}


static ngx_int_t
ngx_shinsei_signup_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_shinsei_form_check(r, ctx, ngx_shinsei_signup_fields);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_signup_form(r, ctx);
    }

    return ngx_shinsei_crypto_password_hash(r,
                                     ngx_shinsei_form_value(ctx, "password"),
                                     ngx_shinsei_signup_hashed);
}


static ngx_int_t
ngx_shinsei_signup_hashed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_password_t *pw)
{
    cJSON      *vars;
    ngx_str_t   p[9], token, *email, *name, *kana;

    email = ngx_shinsei_form_value(ctx, "email");
    name = ngx_shinsei_form_value(ctx, "name");
    kana = ngx_shinsei_form_value(ctx, "name_kana");

    p[0] = ctx->tenant->code;
    p[5] = pw->hash;

    if (ngx_shinsei_crypto_blind_index(r->pool, email, &p[1]) != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, email, "email", &p[2]) != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, name, "name", &p[3]) != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, kana, "name_kana", &p[4])
           != NGX_OK
        || ngx_shinsei_crypto_token(r->pool, &token, &p[6]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* both mails are made; the database knows which one goes */

    vars = ngx_shinsei_account_vars(r, name, "/verify?t=", &token);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/signup_verify", email, vars,
                                  &p[7])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vars = ngx_shinsei_account_vars(r, NULL, NULL, NULL);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/signup_exists", email, vars,
                                  &p[8])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_signup_stmt, p, 9,
                                ngx_shinsei_signup_done, 0);
}


static ngx_int_t
ngx_shinsei_signup_done(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_response_redirect_to(r, "/signup/sent");
}


static ngx_int_t
ngx_shinsei_signup_sent(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_response_render(r, ctx, "signup_sent", NGX_HTTP_OK);
}


static ngx_int_t
ngx_shinsei_verify_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_account_token_query(r, ctx, "verify",
                                           &ngx_shinsei_verify_state_stmt,
                                           ngx_shinsei_verify_state);
}


static ngx_int_t
ngx_shinsei_verify_state(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_account_token_page(r, ctx, "verify",
                                          PQgetvalue(res, 0, 0), NULL);
}


static ngx_int_t
ngx_shinsei_verify_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_account_token_query(r, ctx, "verify",
                                           &ngx_shinsei_verify_stmt,
                                           ngx_shinsei_verify_done);
}


static ngx_int_t
ngx_shinsei_verify_done(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    char  *status;

    status = PQgetvalue(res, 0, 0);

    if (ngx_strcmp(status, "ok") == 0) {
        return ngx_shinsei_response_redirect_to(r, "/login?m=verified");
    }

    return ngx_shinsei_account_token_page(r, ctx, "verify", status, NULL);
}
