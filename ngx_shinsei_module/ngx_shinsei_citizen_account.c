
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
#include "ngx_shinsei_handler.h"


const char  ngx_shinsei_hint_name[] =
    "姓と名の間にスペースを入れてください"
    "（例：葛城 太郎）";

const char  ngx_shinsei_hint_name_kana[] =
    "全角カタカナで入力してください"
    "（例：カツラギ タロウ）";

const char  ngx_shinsei_hint_new_password[] =
    "8文字以上128文字以内。"
    "よく使われていて推測されやすいものは使えません";


/*
 * The values of an account mail: the resident's name, the link to follow
 * (site URL + path + token), and the login and reset pages.
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
                                        ngx_shinsei_cstr(r->pool, name))
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

    return vars;

failed:

    cJSON_Delete(vars);

    return NULL;
}


/* the token of a link: "t" in the query, or in the form posted from it */

ngx_str_t *
ngx_shinsei_account_token(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    u_char     *p;
    ngx_str_t  *t;

    t = ngx_shinsei_field(r->method == NGX_HTTP_POST ? ctx->form : ctx->args,
                          "t");

    if (t == NULL || t->len != NGX_SHINSEI_TOKEN_LEN) {
        return NULL;
    }

    for (p = t->data; p < t->data + t->len; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            return NULL;
        }
    }

    ctx->token = *t;

    return t;
}


/*
 * A page reached from a link: "ok" shows its form, with the token in it;
 * "expired", "used" and "unknown" say so and what to do instead.
 */

ngx_int_t
ngx_shinsei_account_token_page(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *page, const char *state, ngx_shinsei_field_def_t *defs)
{
    u_char  key[32];
    cJSON  *view;

    view = ngx_shinsei_view(r, ctx);
    if (view == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_snprintf(key, sizeof(key) - 1, "state_%s", state) = '\0';

    if (cJSON_AddTrueToObject(view, (char *) key) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_strcmp(state, "ok") == 0 && ctx->token.len
        && cJSON_AddStringToObject(view, "t",
                                   ngx_shinsei_cstr(r->pool, &ctx->token))
           == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_strcmp(state, "ok") != 0) {
        return ngx_shinsei_render(r, ctx, page, NGX_HTTP_NOT_FOUND);
    }

    if (defs) {
        return ngx_shinsei_form_render(r, ctx, defs, page, 0);
    }

    return ngx_shinsei_render(r, ctx, page, NGX_HTTP_OK);
}
