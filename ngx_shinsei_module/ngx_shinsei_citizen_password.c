
/*
 * Copyright (C) ngx_shinsei developers
 *
 * A forgotten password (パスワードの再発行, REQ U-AUTH-2): the same
 * answer whether the address has an account or not; a link valid for one
 * hour, once; when the password changes, every session of the account
 * ends, the links sent before for a reset or a new address are void, and
 * a notice goes to its address.  Following the link proves the
 * address: an account not yet verified is verified by it.
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


typedef struct {
    ngx_str_t                  email;
    ngx_str_t                  name;
} ngx_shinsei_reset_t;


static ngx_int_t ngx_shinsei_forgot_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_forgot_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_forgot_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_forgot_sent(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_reset_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_reset_state(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_reset_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_reset_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_reset_found(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_reset_hashed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);
static ngx_int_t ngx_shinsei_reset_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);


ngx_shinsei_route_t  ngx_shinsei_password_routes[] = {

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/password/forgot"),
      ngx_shinsei_forgot_form, NGX_SHINSEI_ROUTE_SESSION, NULL },

    { NGX_HTTP_POST, ngx_string("/password/forgot"),
      ngx_shinsei_forgot_post, NGX_SHINSEI_ROUTE_SESSION,
      ngx_shinsei_forgot_form },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/password/forgot/sent"),
      ngx_shinsei_forgot_sent, 0, NULL },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/password/reset"),
      ngx_shinsei_reset_page,
      NGX_SHINSEI_ROUTE_SESSION|NGX_SHINSEI_ROUTE_TOKEN, NULL },

    { NGX_HTTP_POST, ngx_string("/password/reset"),
      ngx_shinsei_reset_post,
      NGX_SHINSEI_ROUTE_SESSION|NGX_SHINSEI_ROUTE_TOKEN,
      ngx_shinsei_reset_form },

    ngx_shinsei_null_route
};


static ngx_shinsei_field_def_t  ngx_shinsei_forgot_fields[] = {
    ngx_shinsei_field_email("メールアドレス",
                            "登録したメールアドレスを"
                            "入力してください"),
    ngx_shinsei_null_field
};


static ngx_shinsei_field_def_t  ngx_shinsei_reset_fields[] = {
    ngx_shinsei_field_new_password("新しいパスワード"),
    ngx_shinsei_null_field
};


/*
 * The same statement, the same mails made, and a mail queued, for an
 * address with an account and without (finding 8): the link, or "there
 * is no account with this address".  Only the token row differs.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_forgot_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT request_reset($1, decode($2, 'hex'), decode($3, 'hex'),"
    " $4::jsonb, $5::jsonb)");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_reset_state_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT token_state($1, 'reset',"
    " session_link($1, decode($2, 'hex'), 'reset'))");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_reset_lookup_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT token_state($1, 'reset', l.hash), c.email_enc, c.name_enc,"
    " c.id"
    " FROM (SELECT session_link($1, decode($2, 'hex'), 'reset') AS hash) l"
    " LEFT JOIN tokens t ON t.city = $1 AND t.kind = 'reset'"
    "  AND t.token_hash = l.hash"
    " LEFT JOIN citizens c ON c.id = t.citizen_id AND c.city = t.city");


/*
 * The token is spent, the password set, every session and every other
 * link of the account (reset, new address) ended, the counted attempts
 * forgotten, and the notice queued: one statement.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_reset_stmt =
    ngx_shinsei_pg_stmt(
    "WITH l AS (SELECT session_link($1, decode($2, 'hex'), 'reset') AS hash),"
    " t AS (SELECT * FROM use_token($1, 'reset', (SELECT hash FROM l))),"
    " up AS (UPDATE citizens SET password_hash = $3, updated_at = now(),"
    "  verified_at = coalesce(verified_at, now())"
    "  WHERE id = (SELECT citizen_id FROM t WHERE status = 'ok')"
    "  AND city = $1 RETURNING id, email_index),"
    " s AS (DELETE FROM sessions WHERE citizen_id IN (SELECT id FROM up)"
    "  RETURNING id_hash),"
    " f AS (DELETE FROM login_failures WHERE city = $1"
    "  AND email_index IN (SELECT email_index FROM up)),"
    " o AS (UPDATE tokens SET used_at = now()"
    "  WHERE citizen_id IN (SELECT id FROM up)"
    "  AND kind IN ('reset', 'email')"
    "  AND used_at IS NULL"
    "  AND token_hash IS DISTINCT FROM (SELECT hash FROM l)),"
    " m AS (SELECT enqueue_mail($1, 'password_changed:' || id || ':'"
    "  || extract(epoch FROM now())::bigint, $4::jsonb) FROM up)"
    " SELECT (SELECT status FROM t), (SELECT count(*) FROM m),"
    " (SELECT string_agg(encode(id_hash, 'hex'), ' ') FROM s)");


static ngx_int_t
ngx_shinsei_forgot_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_form_render(r, ctx, ngx_shinsei_forgot_fields,
                                   "password_forgot", 0);
}


static ngx_int_t
ngx_shinsei_forgot_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    cJSON      *vars;
    ngx_int_t   rc;
    ngx_str_t   p[5], token, *email;

    rc = ngx_shinsei_form_check(r, ctx, ngx_shinsei_forgot_fields);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_forgot_form(r, ctx);
    }

    email = ngx_shinsei_form_value(ctx, "email");
    p[0] = ctx->tenant->code;

    if (ngx_shinsei_crypto_blind_index(r->pool, email, &p[1]) != NGX_OK
        || ngx_shinsei_crypto_token(r->pool, &token, &p[2]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the name is not known before the query: the mail does without */

    vars = ngx_shinsei_account_vars(r, NULL, "/password/reset?t=", &token);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/password_reset", email, vars,
                                  &p[3])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vars = ngx_shinsei_account_vars(r, NULL, NULL, NULL);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/password_reset_unknown",
                                  email, vars, &p[4])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_forgot_stmt, p, 5,
                                ngx_shinsei_forgot_done, 0);
}


static ngx_int_t
ngx_shinsei_forgot_done(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_response_redirect_to(r, "/password/forgot/sent");
}


static ngx_int_t
ngx_shinsei_forgot_sent(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_response_render(r, ctx, "password_forgot_sent",
                                       NGX_HTTP_OK);
}


static ngx_int_t
ngx_shinsei_reset_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_shinsei_account_link(r, ctx, "reset");

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_shinsei_account_token_query(r, ctx, "password_reset",
                                           &ngx_shinsei_reset_state_stmt,
                                           ngx_shinsei_reset_state);
}


static ngx_int_t
ngx_shinsei_reset_state(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_account_token_page(r, ctx, "password_reset",
                                          PQgetvalue(res, 0, 0),
                                          ngx_shinsei_reset_fields);
}


/* the form again, for a refused POST: the token is still in it */

static ngx_int_t
ngx_shinsei_reset_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_account_token_page(r, ctx, "password_reset", "ok",
                                          ngx_shinsei_reset_fields);
}


static ngx_int_t
ngx_shinsei_reset_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_shinsei_form_check(r, ctx, ngx_shinsei_reset_fields);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_reset_form(r, ctx);
    }

    return ngx_shinsei_account_token_query(r, ctx, "password_reset",
                                           &ngx_shinsei_reset_lookup_stmt,
                                           ngx_shinsei_reset_found);
}


static ngx_int_t
ngx_shinsei_reset_found(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    char                 *state;
    u_char                aad[NGX_SHINSEI_AAD_LEN];
    ngx_str_t             id;
    ngx_shinsei_reset_t  *rs;

    state = PQgetvalue(res, 0, 0);

    if (ngx_strcmp(state, "ok") != 0) {
        return ngx_shinsei_account_token_page(r, ctx, "password_reset",
                                              state, NULL);
    }

    rs = ngx_pcalloc(r->pool, sizeof(ngx_shinsei_reset_t));
    if (rs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_shinsei_db_value(r, res, 0, 3, &id) != NGX_OK
        || ngx_shinsei_db_decrypt(r, res, 0, 1,
                                  ngx_shinsei_crypto_aad(aad,
                                                         "citizens.email_enc",
                                                         &id),
                                  &rs->email)
           != NGX_OK
        || ngx_shinsei_db_decrypt(r, res, 0, 2,
                                  ngx_shinsei_crypto_aad(aad,
                                                         "citizens.name_enc",
                                                         &id),
                                  &rs->name)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = rs;

    return ngx_shinsei_crypto_password_hash(r,
                                     ngx_shinsei_form_value(ctx, "password"),
                                     ngx_shinsei_reset_hashed);
}


static ngx_int_t
ngx_shinsei_reset_hashed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_password_t *pw)
{
    cJSON                *vars;
    ngx_str_t             p[4];
    ngx_shinsei_reset_t  *rs;

    rs = ctx->data;

    p[0] = ctx->tenant->code;
    p[2] = pw->hash;

    if (ngx_shinsei_session_id_hash(r, ctx, &p[1]) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vars = ngx_shinsei_account_vars(r, &rs->name, NULL, NULL);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/password_changed", &rs->email,
                                  vars, &p[3])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_reset_stmt, p, 4,
                                ngx_shinsei_reset_done, 0);
}


static ngx_int_t
ngx_shinsei_reset_done(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    char  *status;

    status = PQgetvalue(res, 0, 0);

    if (ngx_strcmp(status, "ok") != 0) {
        /* spent by another tab meanwhile */
        return ngx_shinsei_account_token_page(r, ctx, "password_reset",
                                              status, NULL);
    }

    ngx_shinsei_session_forget(res, 0, 2);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  ngx_shinsei_log_prefix "password reset by mail link");

    return ngx_shinsei_response_redirect_to(r, "/login?m=password_reset");
}
