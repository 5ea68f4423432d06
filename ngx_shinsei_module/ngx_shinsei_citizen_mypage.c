
/*
 * Copyright (C) ngx_shinsei developers
 *
 * My page (マイページ): the resident's name, password and address, and
 * leaving the service (退会).  Changing the password, the address or
 * leaving asks for the current password again (OWASP ASVS 4.0.3 3.7.1).
 * A new address is confirmed from a mail to it before it replaces the old
 * one, and the old one is told at once.
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


#define NGX_SHINSEI_MYPAGE  (NGX_SHINSEI_ROUTE_SESSION|NGX_SHINSEI_ROUTE_LOGIN)


typedef ngx_int_t (*ngx_shinsei_mypage_step_pt)(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);


typedef struct {
    ngx_shinsei_field_def_t     *defs;
    ngx_shinsei_handler_pt       form;       /* shows the form again */
    ngx_shinsei_mypage_step_pt   next;       /* the change itself */
    const char                  *done;       /* where to go after */
    int                          forget;     /* the sessions it changed */

    /* of one request: a copy */
    ngx_uint_t                   failures;   /* before this attempt */
} ngx_shinsei_mypage_t;


static ngx_int_t ngx_shinsei_mypage(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_name_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_name_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_name_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_password_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_password_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_password_change(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_password_hashed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);
static ngx_int_t ngx_shinsei_email_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_email_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_email_change(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_email_sent(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_email_confirm_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_email_confirm_state(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_email_confirm_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_email_confirmed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_delete_form(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_delete_post(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_delete_account(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_goodbye(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);
static ngx_int_t ngx_shinsei_mypage_reauth(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_mypage_t *mp);
static ngx_int_t ngx_shinsei_mypage_refused(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_mypage_hash_loaded(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_mypage_reauthed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);
static ngx_int_t ngx_shinsei_mypage_done(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_shinsei_mypage_id(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_str_t *p);


ngx_shinsei_route_t  ngx_shinsei_mypage_routes[] = {

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/mypage"),
      ngx_shinsei_mypage, NGX_SHINSEI_MYPAGE, NULL },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/mypage/name"),
      ngx_shinsei_name_form, NGX_SHINSEI_MYPAGE, NULL },

    { NGX_HTTP_POST, ngx_string("/mypage/name"),
      ngx_shinsei_name_post, NGX_SHINSEI_MYPAGE, ngx_shinsei_name_page },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/mypage/password"),
      ngx_shinsei_password_form, NGX_SHINSEI_MYPAGE, NULL },

    { NGX_HTTP_POST, ngx_string("/mypage/password"),
      ngx_shinsei_password_post, NGX_SHINSEI_MYPAGE,
      ngx_shinsei_password_form },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/mypage/email"),
      ngx_shinsei_email_form, NGX_SHINSEI_MYPAGE, NULL },

    { NGX_HTTP_POST, ngx_string("/mypage/email"),
      ngx_shinsei_email_post, NGX_SHINSEI_MYPAGE, ngx_shinsei_email_form },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/mypage/email/sent"),
      ngx_shinsei_email_sent, NGX_SHINSEI_MYPAGE, NULL },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/email/confirm"),
      ngx_shinsei_email_confirm_page,
      NGX_SHINSEI_ROUTE_SESSION|NGX_SHINSEI_ROUTE_TOKEN, NULL },

    { NGX_HTTP_POST, ngx_string("/email/confirm"),
      ngx_shinsei_email_confirm_post,
      NGX_SHINSEI_ROUTE_SESSION|NGX_SHINSEI_ROUTE_TOKEN,
      ngx_shinsei_email_confirm_page },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/mypage/delete"),
      ngx_shinsei_delete_form, NGX_SHINSEI_MYPAGE, NULL },

    { NGX_HTTP_POST, ngx_string("/mypage/delete"),
      ngx_shinsei_delete_post, NGX_SHINSEI_MYPAGE, ngx_shinsei_delete_form },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_string("/goodbye"),
      ngx_shinsei_goodbye, 0, NULL },

    ngx_shinsei_null_route
};


static ngx_shinsei_field_def_t  ngx_shinsei_name_fields[] = {
    ngx_shinsei_field_name,
    ngx_shinsei_field_name_kana,
    ngx_shinsei_null_field
};


static ngx_shinsei_field_def_t  ngx_shinsei_password_fields[] = {
    ngx_shinsei_field_current_password("current_password",
                                       "現在のパスワード"),
    ngx_shinsei_field_new_password("新しいパスワード"),
    ngx_shinsei_null_field
};


static ngx_shinsei_field_def_t  ngx_shinsei_email_fields[] = {
    ngx_shinsei_field_email("新しいメールアドレス",
                            "確認のためのメールを"
                            "新しいアドレスにお送りします"),
    ngx_shinsei_field_current_password("current_password",
                                       "現在のパスワード"),
    ngx_shinsei_null_field
};


static ngx_shinsei_field_def_t  ngx_shinsei_delete_fields[] = {
    ngx_shinsei_field_current_password("current_password",
                                       "現在のパスワード"),
    ngx_shinsei_null_field
};


static ngx_shinsei_mypage_t  ngx_shinsei_mypage_password = {
    ngx_shinsei_password_fields, ngx_shinsei_password_form,
    ngx_shinsei_password_change, "/mypage?m=password_changed", 1, 0
};

static ngx_shinsei_mypage_t  ngx_shinsei_mypage_email = {
    ngx_shinsei_email_fields, ngx_shinsei_email_form,
    ngx_shinsei_email_change, "/mypage/email/sent", -1, 0
};

static ngx_shinsei_mypage_t  ngx_shinsei_mypage_delete = {
    ngx_shinsei_delete_fields, ngx_shinsei_delete_form,
    ngx_shinsei_delete_account, "/goodbye", 1, 0
};

static ngx_shinsei_mypage_t  ngx_shinsei_mypage_name = {
    ngx_shinsei_name_fields, ngx_shinsei_name_page,
    NULL, "/mypage?m=name_changed", 0, 0
};


static const char  ngx_shinsei_mypage_msg_same_email[] =
    "今と同じメールアドレスです。"
    "新しいメールアドレスを入力してください";

static const char  ngx_shinsei_mypage_msg_wrong_password[] =
    "現在のパスワードが正しくありません";


/*
 * A change of what the sessions of the account show answers their
 * hashes: forgotten by the session cache at once (the NOTIFY of sql/008
 * tells the other workers and nodes).
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_name_stmt =
    ngx_shinsei_pg_stmt(
    "UPDATE citizens SET name_enc = $3, name_kana_enc = $4,"
    " updated_at = now() WHERE id = $1::bigint AND city = $2"
    " RETURNING (SELECT string_agg(encode(id_hash, 'hex'), ' ')"
    "  FROM sessions WHERE citizen_id = $1::bigint)");


/* the hash, and the failures of the last 15 minutes as at the login */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_hash_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT a.paused, a.failures, c.password_hash"
    " FROM citizens c"
    " CROSS JOIN LATERAL login_attempt(c.city, c.email_index) a"
    " WHERE c.id = $1::bigint AND c.city = $2");


/*
 * The other sessions end (this one stays), links for a reset or a new
 * address sent before are void, the counted attempt goes.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_password_stmt =
    ngx_shinsei_pg_stmt(
    "WITH up AS (UPDATE citizens SET password_hash = $3, updated_at = now()"
    "  WHERE id = $1::bigint AND city = $2 RETURNING id, email_index),"
    " s AS (DELETE FROM sessions WHERE citizen_id IN (SELECT id FROM up)"
    "  AND id_hash <> decode($4, 'hex') RETURNING id_hash),"
    " t AS (UPDATE tokens SET used_at = now()"
    "  WHERE citizen_id IN (SELECT id FROM up)"
    "  AND kind IN ('reset', 'email') AND used_at IS NULL),"
    " f AS (DELETE FROM login_failures WHERE city = $2"
    "  AND email_index IN (SELECT email_index FROM up))"
    " SELECT enqueue_mail($2, 'password_changed:' || $1 || ':'"
    " || extract(epoch FROM now())::bigint, $5::jsonb),"
    " (SELECT string_agg(encode(id_hash, 'hex'), ' ') FROM s) FROM up");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_email_stmt =
    ngx_shinsei_pg_stmt(
    "WITH f AS (DELETE FROM login_failures WHERE city = $2"
    "  AND email_index = (SELECT email_index FROM citizens"
    "   WHERE id = $1::bigint AND city = $2)),"
    " t AS (INSERT INTO tokens (city, citizen_id, kind, token_hash,"
    "  data, expires_at)"
    " VALUES ($2, $1::bigint, 'email', decode($3, 'hex'),"
    "  jsonb_build_object('email_enc', $4::text, 'email_index', $5::text),"
    "  now() + interval '24 hours') RETURNING id)"
    " SELECT enqueue_mail($2, 'email_confirm:' || t.id, $6::jsonb),"
    " enqueue_mail($2, 'email_notice:' || t.id, $7::jsonb) FROM t");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_email_state_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT token_state($1, 'email',"
    " session_link($1, decode($2, 'hex'), 'email'))");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_email_confirm_stmt =
    ngx_shinsei_pg_stmt(
    "WITH l AS (SELECT session_link($1, decode($2, 'hex'), 'email') AS hash),"
    " c AS (SELECT change_email($1, (SELECT hash FROM l)) AS status)"
    " SELECT c.status, (SELECT string_agg(encode(s.id_hash, 'hex'), ' ')"
    "  FROM tokens t JOIN sessions s ON s.citizen_id = t.citizen_id"
    "  WHERE t.city = $1 AND t.kind = 'email'"
    "  AND t.token_hash = (SELECT hash FROM l))"
    " FROM c");


/* the rows of the account go with it: sessions, tokens (cascade) */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_delete_stmt =
    ngx_shinsei_pg_stmt(
    "WITH gone AS (SELECT string_agg(encode(id_hash, 'hex'), ' ') AS hashes"
    "  FROM sessions WHERE citizen_id = $1::bigint AND city = $2),"
    " d AS (DELETE FROM citizens WHERE id = $1::bigint AND city = $2"
    "  RETURNING id, email_index),"
    " f AS (DELETE FROM login_failures WHERE city = $2"
    "  AND email_index IN (SELECT email_index FROM d))"
    " SELECT enqueue_mail($2, 'goodbye:' || id, $3::jsonb),"
    " (SELECT hashes FROM gone) FROM d");


/* what the page shows came with the session: no query of its own */

static ngx_int_t
ngx_shinsei_mypage(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    char       *name, *kana, *email, *since;
    cJSON      *view;
    ngx_str_t   k, d;

    if (ngx_shinsei_session_profile(r, ctx, "name_kana_enc",
                                    "citizens.name_kana_enc", &k)
        != NGX_OK
        || ngx_shinsei_session_profile(r, ctx, "since", NULL, &d) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    view = ngx_shinsei_response_view(r, ctx);

    name = ngx_shinsei_string_cstr(r->pool, &ctx->session.name);
    kana = ngx_shinsei_string_cstr(r->pool, &k);
    email = ngx_shinsei_string_cstr(r->pool, &ctx->session.email);
    since = ngx_shinsei_string_cstr(r->pool, &d);

    if (view == NULL || name == NULL || kana == NULL || email == NULL
        || since == NULL
        || cJSON_AddStringToObject(view, "name", name) == NULL
        || cJSON_AddStringToObject(view, "name_kana", kana) == NULL
        || cJSON_AddStringToObject(view, "email", email) == NULL
        || cJSON_AddStringToObject(view, "since", since) == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_response_render(r, ctx, "mypage", NGX_HTTP_OK);
}


static ngx_int_t
ngx_shinsei_name_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  kana;

    if (ngx_shinsei_session_profile(r, ctx, "name_kana_enc",
                                    "citizens.name_kana_enc",
                                    &kana)
        != NGX_OK
        || ngx_shinsei_form_set(r, ctx, "name", &ctx->session.name) != NGX_OK
        || ngx_shinsei_form_set(r, ctx, "name_kana", &kana) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_name_page(r, ctx);
}


static ngx_int_t
ngx_shinsei_name_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_form_render(r, ctx, ngx_shinsei_name_fields,
                                   "mypage_name", 0);
}


static ngx_int_t
ngx_shinsei_name_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    u_char      aad[NGX_SHINSEI_AAD_LEN];
    ngx_int_t   rc;
    ngx_str_t   p[4], *name, *kana;

    rc = ngx_shinsei_form_check(r, ctx, ngx_shinsei_name_fields);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_shinsei_name_page(r, ctx);
    }

    name = ngx_shinsei_form_value(ctx, "name");
    kana = ngx_shinsei_form_value(ctx, "name_kana");

    if (ngx_shinsei_mypage_id(r, ctx, p) != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, name,
                             ngx_shinsei_crypto_aad_id(aad, "citizens.name_enc",
                                                       ctx->session.user_id),
                             &p[2])
           != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, kana,
                        ngx_shinsei_crypto_aad_id(aad, "citizens.name_kana_enc",
                                                  ctx->session.user_id),
                        &p[3])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = &ngx_shinsei_mypage_name;

    return ngx_shinsei_db_query(r, &ngx_shinsei_name_stmt, p, 4,
                                ngx_shinsei_mypage_done, 0);
}


static ngx_int_t
ngx_shinsei_password_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_form_render(r, ctx, ngx_shinsei_password_fields,
                                   "mypage_password", 0);
}


static ngx_int_t
ngx_shinsei_password_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_mypage_reauth(r, ctx, &ngx_shinsei_mypage_password);
}


static ngx_int_t
ngx_shinsei_password_change(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_str_t  *password;

    password = ngx_shinsei_form_value(ctx, "password");

    return ngx_shinsei_crypto_password_hash(r, password,
                                            ngx_shinsei_password_hashed);
}


static ngx_int_t
ngx_shinsei_password_hashed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_password_t *pw)
{
    cJSON      *vars;
    ngx_str_t   p[5];

    if (ngx_shinsei_mypage_id(r, ctx, p) != NGX_OK
        || ngx_shinsei_crypto_token_hash(r->pool, &ctx->session.id, &p[3])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p[2] = pw->hash;

    vars = ngx_shinsei_account_vars(r, &ctx->session.name, NULL, NULL);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/password_changed",
                                  &ctx->session.email, vars, &p[4])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_password_stmt, p, 5,
                                ngx_shinsei_mypage_done, 0);
}


static ngx_int_t
ngx_shinsei_email_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    cJSON  *view;

    view = ngx_shinsei_response_view(r, ctx);

    if (view == NULL
        || cJSON_AddStringToObject(view, "current_email",
                                   ngx_shinsei_string_cstr(r->pool,
                                                           &ctx->session.email))
           == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_form_render(r, ctx, ngx_shinsei_email_fields,
                                   "mypage_email", 0);
}


static ngx_int_t
ngx_shinsei_email_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_mypage_reauth(r, ctx, &ngx_shinsei_mypage_email);
}


static ngx_int_t
ngx_shinsei_email_change(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    u_char      aad[NGX_SHINSEI_AAD_LEN];
    cJSON      *vars;
    ngx_str_t   p[7], token, *email;

    email = ngx_shinsei_form_value(ctx, "email");

    if (ngx_shinsei_mypage_id(r, ctx, p) != NGX_OK
        || ngx_shinsei_crypto_token(r->pool, &token, &p[2]) != NGX_OK
        || ngx_shinsei_crypto_encrypt(r->pool, email,
                          ngx_shinsei_crypto_aad_id(aad, "citizens.email_enc",
                                                    ctx->session.user_id),
                          &p[3])
           != NGX_OK
        || ngx_shinsei_crypto_blind_index(r->pool, email, &p[4]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* to an address not confirmed: nothing typed goes in (finding 2) */

    vars = ngx_shinsei_account_vars(r, NULL, "/email/confirm?t=", &token);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/email_confirm", email, vars,
                                  &p[5])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vars = ngx_shinsei_account_vars(r, &ctx->session.name, NULL, NULL);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/email_notice",
                                  &ctx->session.email, vars, &p[6])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_email_stmt, p, 7,
                                ngx_shinsei_mypage_done, 0);
}


static ngx_int_t
ngx_shinsei_email_sent(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_response_render(r, ctx, "mypage_email_sent",
                                       NGX_HTTP_OK);
}


static ngx_int_t
ngx_shinsei_email_confirm_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_shinsei_account_link(r, ctx, "email");

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_shinsei_account_token_query(r, ctx, "email_confirm",
                                           &ngx_shinsei_email_state_stmt,
                                           ngx_shinsei_email_confirm_state);
}


static ngx_int_t
ngx_shinsei_email_confirm_state(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res)
{
    return ngx_shinsei_account_token_page(r, ctx, "email_confirm",
                                          PQgetvalue(res, 0, 0), NULL);
}


static ngx_int_t
ngx_shinsei_email_confirm_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_account_token_query(r, ctx, "email_confirm",
                                           &ngx_shinsei_email_confirm_stmt,
                                           ngx_shinsei_email_confirmed);
}


static ngx_int_t
ngx_shinsei_email_confirmed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    char  *status;

    status = PQgetvalue(res, 0, 0);

    if (ngx_strcmp(status, "ok") != 0) {
        return ngx_shinsei_account_token_page(r, ctx, "email_confirm",
                                              status, NULL);
    }

    ngx_shinsei_session_forget(res, 0, 1);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  ngx_shinsei_log_prefix "e-mail address changed by mail "
                  "link");

    return ngx_shinsei_response_redirect_to(r, ctx->session.user_id
                                                    ? "/mypage?m=email_changed"
                                                    : "/login?m=email_changed");
}


static ngx_int_t
ngx_shinsei_delete_form(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_form_render(r, ctx, ngx_shinsei_delete_fields,
                                   "mypage_delete", 0);
}


static ngx_int_t
ngx_shinsei_delete_post(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_mypage_reauth(r, ctx, &ngx_shinsei_mypage_delete);
}


static ngx_int_t
ngx_shinsei_delete_account(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    cJSON      *vars;
    ngx_str_t   p[3], email, name, hash;

    if (ngx_shinsei_mypage_id(r, ctx, p) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    email = ctx->session.email;
    name = ctx->session.name;

    vars = ngx_shinsei_account_vars(r, &name, NULL, NULL);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/goodbye", &email, vars, &p[2])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the session row goes with the account; the cookie goes too */

    if (ngx_shinsei_session_end(r, ctx, &hash) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  ngx_shinsei_log_prefix "citizen %V leaves the service",
                  &p[0]);

    return ngx_shinsei_db_query(r, &ngx_shinsei_delete_stmt, p, 3,
                                ngx_shinsei_mypage_done, 0);
}


static ngx_int_t
ngx_shinsei_goodbye(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    return ngx_shinsei_response_render(r, ctx, "goodbye", NGX_HTTP_OK);
}


/*
 * The current password first: the form is checked, the stored hash read,
 * the password verified in the thread pool; then next() does the change.
 */

static ngx_int_t
ngx_shinsei_mypage_reauth(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_mypage_t *mp)
{
    ngx_int_t              rc;
    ngx_str_t              p[2], *email;
    ngx_shinsei_mypage_t  *copy;

    copy = ngx_palloc(r->pool, sizeof(ngx_shinsei_mypage_t));
    if (copy == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *copy = *mp;
    ctx->data = copy;

    rc = ngx_shinsei_form_check(r, ctx, mp->defs);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    email = ngx_shinsei_form_value(ctx, "email");

    if (rc == NGX_OK && mp == &ngx_shinsei_mypage_email
        && email->len == ctx->session.email.len
        && ngx_strncmp(email->data, ctx->session.email.data, email->len) == 0)
    {
        rc = NGX_DECLINED;

        if (ngx_shinsei_form_error(r, ctx, "email",
                                   ngx_shinsei_mypage_msg_same_email)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (rc == NGX_DECLINED) {
        return mp->form(r, ctx);
    }

    if (ngx_shinsei_mypage_id(r, ctx, p) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_hash_stmt, p, 2,
                                ngx_shinsei_mypage_hash_loaded, 0);
}


static ngx_int_t
ngx_shinsei_mypage_hash_loaded(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    ngx_int_t              rc;
    ngx_str_t              stored, *current;
    ngx_shinsei_mypage_t  *mp;

    mp = ctx->data;

    if (ngx_shinsei_db_value(r, res, 0, 2, &stored) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a stolen session cannot guess the password here either */

    rc = ngx_shinsei_account_paused(r, ctx, res, 0, &mp->failures);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return mp->form(r, ctx);
    }

    current = ngx_shinsei_form_value(ctx, "current_password");

    return ngx_shinsei_crypto_password_verify(r, current, &stored,
                                              ngx_shinsei_mypage_reauthed);
}


static ngx_int_t
ngx_shinsei_mypage_reauthed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_password_t *pw)
{
    ngx_str_t              p[2];
    ngx_shinsei_mypage_t  *mp;

    mp = ctx->data;

    if (!pw->verified) {
        if (ngx_shinsei_mypage_id(r, ctx, p) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_shinsei_account_failed(r, ctx, mp->failures, &p[0],
                                          &ctx->session.email,
                                          &ctx->session.name,
                                          ngx_shinsei_mypage_refused);
    }

    return mp->next(r, ctx);
}


static ngx_int_t
ngx_shinsei_mypage_refused(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    ngx_shinsei_mypage_t  *mp;

    mp = ctx->data;

    if (ngx_shinsei_form_error(r, ctx, "current_password",
                               ngx_shinsei_mypage_msg_wrong_password)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return mp->form(r, ctx);
}


static ngx_int_t
ngx_shinsei_mypage_done(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    ngx_shinsei_mypage_t  *mp;

    mp = ctx->data;

    if (mp->forget >= 0) {
        ngx_shinsei_session_forget(res, 0, mp->forget);
    }

    return ngx_shinsei_response_redirect_to(r, mp->done);
}


/* $1 the resident, $2 the city: every query of these pages starts so */

static ngx_int_t
ngx_shinsei_mypage_id(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_str_t *p)
{
    p[0].data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p[0].data == NULL) {
        return NGX_ERROR;
    }

    p[0].len = ngx_sprintf(p[0].data, "%L", ctx->session.user_id)
               - p[0].data;
    p[1] = ctx->tenant->code;

    return NGX_OK;
}
