
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Sign-up (新規登録) and the verification of the address (REQ U-AUTH-1).
 *
 * Sign-up asks for the address and the name; the password is chosen on
 * the page the verification link opens, so only the owner of the mailbox
 * ever sets it (finding 4: someone signing up with another person's
 * address gets nothing the owner's click would hand over).  The page
 * after sign-up is the same whether the address was new or already had
 * an account: the owner of the address learns which by mail, nobody else
 * does.  The link leads to a page with a form, so a mail scanner opening
 * the link does not spend it.
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_form.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_session.h"
#include "ngx_shinsei_citizen_account.h"


static ngx_int_t ngx_shinsei_signup_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_signup_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_signup_row(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_signup_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_signup_sent(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_verify_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_verify_state(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_verify_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_verify_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_verify_hashed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);
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
      ngx_shinsei_verify_page,
      NGX_SHINSEI_ROUTE_SESSION|NGX_SHINSEI_ROUTE_TOKEN, NULL },

    { NGX_HTTP_POST, ngx_string("/verify"),
      ngx_shinsei_verify_post,
      NGX_SHINSEI_ROUTE_SESSION|NGX_SHINSEI_ROUTE_TOKEN,
      ngx_shinsei_verify_form },

    ngx_shinsei_null_route
};


static ngx_shinsei_field_def_t  ngx_shinsei_signup_fields[] = {
    ngx_shinsei_field_name,
    ngx_shinsei_field_name_kana,
    ngx_shinsei_field_email("メールアドレス",
                            "確認のためのメールをお送りします"),
    ngx_shinsei_null_field
};


static ngx_shinsei_field_def_t  ngx_shinsei_verify_fields[] = {
    ngx_shinsei_field_new_password("パスワード"),
    ngx_shinsei_null_field
};


static ngx_shinsei_pg_stmt_t  ngx_shinsei_signup_id_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT citizen_signup_id($1, decode($2, 'hex'))");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_signup_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT citizen_signup($1, $2::bigint, decode($3, 'hex'), $4, $5, $6,"
    " decode($7, 'hex'), $8::jsonb, $9::jsonb)");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_verify_state_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT token_state($1, 'verify',"
    " session_link($1, decode($2, 'hex'), 'verify'))");


/*
 * The link is spent, the password set and the address confirmed, the
 * failures counted for it forgotten: one statement.  An account already
 * verified (by a reset link meanwhile) keeps its password: "used".
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_verify_stmt =
    ngx_shinsei_pg_stmt(
    "WITH t AS (SELECT * FROM use_token($1, 'verify',"
    "  session_link($1, decode($2, 'hex'), 'verify'))),"
    " v AS (UPDATE citizens SET verified_at = now(), password_hash = $3,"
    "  updated_at = now()"
    "  WHERE id = (SELECT citizen_id FROM t WHERE status = 'ok')"
    "  AND city = $1 AND verified_at IS NULL RETURNING id, email_index),"
    " f AS (DELETE FROM login_failures WHERE city = $1"
    "  AND email_index IN (SELECT email_index FROM v))"
    " SELECT CASE WHEN status = 'ok' AND NOT EXISTS (SELECT 1 FROM v)"
    "  THEN 'used' ELSE status END FROM t");


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
    ngx_str_t  p[2];

    rc = ngx_shinsei_form_check(r, ctx, ngx_shinsei_signup_fields);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_signup_form(r, ctx);
    }

    /* the row first: what is encrypted names it (finding 10) */

    p[0] = ctx->tenant->code;

    if (ngx_shinsei_crypto_blind_index(r->pool,
                                       ngx_shinsei_form_value(ctx, "email"),
                                       &p[1])
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_signup_id_stmt, p, 2,
                                ngx_shinsei_signup_row, 0);
}


static ngx_int_t
ngx_shinsei_signup_row(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    u_char      aad[NGX_SHINSEI_AAD_LEN];
    cJSON      *vars;
    ngx_str_t   p[9], token, *email, *name, *kana;

    email = ngx_shinsei_form_value(ctx, "email");
    name = ngx_shinsei_form_value(ctx, "name");
    kana = ngx_shinsei_form_value(ctx, "name_kana");

    p[0] = ctx->tenant->code;

    if (ngx_shinsei_db_value(r, res, 0, 0, &p[1]) != NGX_OK
        || ngx_shinsei_crypto_blind_index(r->pool, email, &p[2]) != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, email,
                           ngx_shinsei_crypto_aad(aad, "citizens.email_enc",
                                                  &p[1]),
                           &p[3])
           != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, name,
                           ngx_shinsei_crypto_aad(aad, "citizens.name_enc",
                                                  &p[1]),
                           &p[4])
           != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, kana,
                           ngx_shinsei_crypto_aad(aad, "citizens.name_kana_enc",
                                                  &p[1]),
                           &p[5])
           != NGX_OK
        || ngx_shinsei_crypto_token(r->pool, &token, &p[6]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * Both mails are made; the database knows which one goes.  Neither
     * repeats what was typed: the address is not confirmed yet, and the
     * city's name is on them (finding 2).
     */

    vars = ngx_shinsei_account_vars(r, NULL, "/verify?t=", &token);
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
    ngx_int_t  rc;

    rc = ngx_shinsei_account_link(r, ctx, "verify");

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_shinsei_account_token_query(r, ctx, "verify",
                                           &ngx_shinsei_verify_state_stmt,
                                           ngx_shinsei_verify_state);
}


static ngx_int_t
ngx_shinsei_verify_state(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_account_token_page(r, ctx, "verify",
                                          PQgetvalue(res, 0, 0),
                                          ngx_shinsei_verify_fields);
}


/* the form again, for a refused POST (the link is checked when sent) */

static ngx_int_t
ngx_shinsei_verify_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_account_token_page(r, ctx, "verify", "ok",
                                          ngx_shinsei_verify_fields);
}


static ngx_int_t
ngx_shinsei_verify_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_shinsei_form_check(r, ctx, ngx_shinsei_verify_fields);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_verify_form(r, ctx);
    }

    return ngx_shinsei_crypto_password_hash(r,
                                     ngx_shinsei_form_value(ctx, "password"),
                                     ngx_shinsei_verify_hashed);
}


static ngx_int_t
ngx_shinsei_verify_hashed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_password_t *pw)
{
    ngx_str_t  p[3];

    p[0] = ctx->tenant->code;
    p[2] = pw->hash;

    if (ngx_shinsei_session_id_hash(r, ctx, &p[1]) != NGX_OK) {
        return ngx_shinsei_account_token_page(r, ctx, "verify", "unknown",
                                              NULL);
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_verify_stmt, p, 3,
                                ngx_shinsei_verify_done, 0);
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
