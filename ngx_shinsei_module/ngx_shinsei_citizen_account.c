
/*
 * Copyright (C) ngx_shinsei developers
 *
 * What the account pages share: the values of account mails, and the
 * pages reached from a mail's link (a single-use token in "t").
 */


#include "ngx_shinsei_citizen_account.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_form.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_session.h"


#define NGX_SHINSEI_FAILURES          5


static const char  ngx_shinsei_account_msg_paused[] =
    "続けて失敗したため、"
    "このアカウントへのログインとパスワードの確認を"
    "一時的に止めています。"
    "%ui分ほど待ってから、もう一度お試しください。"
    "パスワードを忘れた場合は、"
    "パスワードを再発行してください。";


/*
 * The session statement of the residents' site (ngx_shinsei_session.c
 * names its parameters and columns).  A live session is touched at most
 * once a minute; the times are whole seconds down (never later than the
 * row: the cache checks the timeouts with them); the profile holds what
 * the pages show of the resident, still encrypted, and is what the
 * session cache keeps.
 */

ngx_shinsei_pg_stmt_t  ngx_shinsei_account_session_stmt =
    ngx_shinsei_pg_stmt(
    "WITH old AS ("
    "  SELECT s.id_hash, s.citizen_id, s.auth_level, s.created_at,"
    "         s.last_seen_at,"
    "         s.last_seen_at > now() - make_interval(secs => $3::int)"
    "         AND s.created_at > now() - make_interval(secs => $4::int)"
    "         AS live"
    "  FROM sessions s"
    "  WHERE s.id_hash = decode($1, 'hex') AND s.city = $2"
    "  AND s.kind = 'citizen'"
    "), touch AS ("
    "  UPDATE sessions s SET last_seen_at = now()"
    "  FROM old WHERE s.id_hash = old.id_hash AND old.live"
    "  AND s.last_seen_at < now() - interval '60 seconds'"
    "), fresh AS ("
    "  INSERT INTO sessions (id_hash, city, kind)"
    "  SELECT decode($5, 'hex'), $2, 'citizen'"
    "  WHERE $5 <> '' AND NOT EXISTS (SELECT 1 FROM old WHERE live)"
    "  RETURNING 1"
    ")"
    " SELECT coalesce(o.live, false), o.citizen_id,"
    " coalesce(o.auth_level, 0),"
    " floor(extract(epoch FROM o.created_at))::bigint,"
    " floor(extract(epoch FROM o.last_seen_at))::bigint,"
    " (SELECT json_build_object('name_enc', c.name_enc,"
    "   'email_enc', c.email_enc, 'name_kana_enc', c.name_kana_enc,"
    "   'since', to_char(c.created_at AT TIME ZONE 'Asia/Tokyo',"
    "    'YYYY\"年\"FMMM\"月\"FMDD\"日\"'))"
    "  FROM citizens c WHERE c.id = o.citizen_id AND c.city = $2),"
    " EXISTS (SELECT 1 FROM fresh)"
    " FROM (SELECT 1) one LEFT JOIN old o ON o.live");


static ngx_int_t ngx_shinsei_account_linked(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res);


static ngx_shinsei_pg_stmt_t  ngx_shinsei_account_link_stmt =
    ngx_shinsei_pg_stmt(
    "UPDATE sessions SET link_kind = $3,"
    " link_hash = decode(nullif($4, ''), 'hex')"
    " WHERE id_hash = decode($2, 'hex') AND city = $1");


/*
 * The failure that starts the pause: the owner is told, once a day at
 * most (finding 9: anyone can keep an account paused; its owner need not
 * hear of it every 15 minutes).
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_account_warn_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT enqueue_mail($1, 'lockout:' || $2 || ':'"
    " || floor(extract(epoch FROM now()) / 86400), $3::jsonb)");


const char  ngx_shinsei_hint_name[] =
    "姓と名の間にスペースを入れてください"
    "（例：葛城 太郎）";

const char  ngx_shinsei_hint_name_kana[] =
    "全角カタカナで入力してください"
    "（例：カツラギ タロウ）";

const char  ngx_shinsei_hint_new_password[] =
    "12文字以上128文字以内。"
    "よく使われていて推測されやすいものは使えません。"
    "全角と半角の英数字は同じ文字として扱います";


/*
 * The pause after repeated failures (login_attempt() in SQL decides it,
 * for addresses with and without an account alike): res holds, from
 * column col, the seconds of pause left and the failures before this
 * attempt (into *seen).  NGX_DECLINED: paused, and the form says so.
 */

ngx_int_t
ngx_shinsei_account_paused(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res, int col, ngx_uint_t *seen)
{
    u_char     *msg;
    ngx_int_t   paused, failures;

    paused = ngx_atoi((u_char *) PQgetvalue(res, 0, col),
                      PQgetlength(res, 0, col));
    failures = ngx_atoi((u_char *) PQgetvalue(res, 0, col + 1),
                        PQgetlength(res, 0, col + 1));

    if (paused == NGX_ERROR || failures == NGX_ERROR) {
        return NGX_ERROR;
    }

    *seen = failures;

    if (paused == 0) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  ngx_shinsei_log_prefix "password check refused: %i "
                  "failures for the address, paused for %i s",
                  failures, paused);

    msg = ngx_pnalloc(r->pool, 512);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    *ngx_snprintf(msg, 511, ngx_shinsei_account_msg_paused,
                  (ngx_uint_t) (paused + 59) / 60) = '\0';

    if (ngx_shinsei_form_error(r, ctx, NULL, (char *) msg) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * A wrong password: already counted by login_attempt(), after seen
 * others; the failure that starts the pause of an account tells its
 * owner by mail.
 */

ngx_int_t
ngx_shinsei_account_failed(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_uint_t seen, ngx_str_t *id, ngx_str_t *email, ngx_str_t *name,
    ngx_shinsei_db_done_pt done)
{
    cJSON      *vars;
    ngx_str_t   p[3];

    if (id == NULL || id->len == 0) {
        /* no account: nothing to tell anyone */
        return done(r, ctx, NULL);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  ngx_shinsei_log_prefix "wrong password for citizen %V",
                  id);

    if (seen + 1 != NGX_SHINSEI_FAILURES) {
        return done(r, ctx, NULL);
    }

    p[0] = ctx->tenant->code;
    p[1] = *id;

    vars = ngx_shinsei_account_vars(r, name, NULL, NULL);
    if (vars == NULL
        || ngx_shinsei_mail_build(r, ctx, "mail/login_paused", email, vars,
                                  &p[2])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_account_warn_stmt, p, 3,
                                done, 0);
}


/*
 * The values of an account mail: the resident's name, the link to follow
 * (site URL + path + token), and the login, reset and sign-up pages.
 */

cJSON *
ngx_shinsei_account_vars(ngx_http_request_t *r, ngx_str_t *name,
    const char *path, ngx_str_t *token)
{
    u_char                  *p;
    cJSON                   *vars;
    size_t                   len;
    ngx_shinsei_srv_conf_t  *sscf;

    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);

    vars = cJSON_CreateObject();
    if (vars == NULL) {
        return NULL;
    }

    if (name && cJSON_AddStringToObject(vars, "name",
                                        ngx_shinsei_string_cstr(r->pool, name))
                == NULL)
    {
        goto failed;
    }

    len = sscf->site_url.len + sizeof("/password/forgot");

    if (path) {
        len += ngx_strlen(path) + token->len;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        goto failed;
    }

    if (path) {
        *ngx_sprintf(p, "%V%s%V", &sscf->site_url, path, token) = '\0';

        if (cJSON_AddStringToObject(vars, "link", (char *) p) == NULL) {
            goto failed;
        }
    }

    *ngx_sprintf(p, "%V/login", &sscf->site_url) = '\0';

    if (cJSON_AddStringToObject(vars, "login_url", (char *) p) == NULL) {
        goto failed;
    }

    *ngx_sprintf(p, "%V/password/forgot", &sscf->site_url) = '\0';

    if (cJSON_AddStringToObject(vars, "reset_url", (char *) p) == NULL) {
        goto failed;
    }

    *ngx_sprintf(p, "%V/signup", &sscf->site_url) = '\0';

    if (cJSON_AddStringToObject(vars, "signup_url", (char *) p) == NULL) {
        goto failed;
    }

    return vars;

failed:

    cJSON_Delete(vars);

    return NULL;
}


/*
 * A page a mailed link opens, as GET path?t=TOKEN: the token's hash goes
 * into the session (sessions.link_hash, of its kind) and the browser to
 * the page again without the token (finding 7), which then reads it from
 * the session.  The token is in no later log line and no Referer, and
 * these pages send none (NGX_SHINSEI_ROUTE_TOKEN).  NGX_DECLINED: no
 * token in the query, the page goes on.
 */

ngx_int_t
ngx_shinsei_account_link(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *kind)
{
    u_char     *p;
    ngx_str_t   params[4], *t;

    t = ngx_shinsei_body_field(ctx->args, "t");

    if (t == NULL) {
        return NGX_DECLINED;
    }

    params[0] = ctx->tenant->code;
    params[2].data = (u_char *) kind;
    params[2].len = ngx_strlen(kind);
    ngx_str_set(&params[3], "");

    if (ngx_shinsei_session_id_hash(r, ctx, &params[1]) != NGX_OK) {
        /* no session (no cookies): the page says it knows no link */
        return ngx_shinsei_response_redirect(r, &r->uri);
    }

    for (p = t->data; p < t->data + t->len; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            break;
        }
    }

    /* a token that cannot be one leaves the session knowing none */

    if (t->len == NGX_SHINSEI_TOKEN_LEN && p == t->data + t->len
        && ngx_shinsei_crypto_token_hash(r->pool, t, &params[3]) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_shinsei_db_query(r, &ngx_shinsei_account_link_stmt, params, 4,
                                ngx_shinsei_account_linked, 0);
}


static ngx_int_t
ngx_shinsei_account_linked(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    PGresult *res)
{
    return ngx_shinsei_response_redirect(r, &r->uri);
}


/*
 * A page a mailed link opened: the city and the hash of the session are
 * $1 and $2 of stmt, which finds the link's token with session_link().
 */

ngx_int_t
ngx_shinsei_account_token_query(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *page, ngx_shinsei_pg_stmt_t *stmt, ngx_shinsei_db_done_pt done)
{
    ngx_str_t  p[2];

    if (ngx_shinsei_session_id_hash(r, ctx, &p[1]) != NGX_OK) {
        return ngx_shinsei_account_token_page(r, ctx, page, "unknown", NULL);
    }

    p[0] = ctx->tenant->code;

    return ngx_shinsei_db_query(r, stmt, p, 2, done, 0);
}


/*
 * A page reached from a link: "ok" shows its form; "expired", "used" and
 * "unknown" say so and what to do instead.
 */

ngx_int_t
ngx_shinsei_account_token_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *page, const char *state, ngx_shinsei_field_def_t *defs)
{
    u_char   key[32];
    cJSON   *view;

    view = ngx_shinsei_response_view(r, ctx);
    if (view == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_snprintf(key, sizeof(key) - 1, "state_%s", state) = '\0';

    if (cJSON_AddTrueToObject(view, (char *) key) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_strcmp(state, "ok") != 0) {
        return ngx_shinsei_response_render(r, ctx, page, NGX_HTTP_NOT_FOUND);
    }

    if (defs) {
        return ngx_shinsei_form_render(r, ctx, defs, page, 0);
    }

    return ngx_shinsei_response_render(r, ctx, page, NGX_HTTP_OK);
}
