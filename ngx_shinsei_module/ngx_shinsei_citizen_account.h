
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_CITIZEN_ACCOUNT_H_INCLUDED_
#define _NGX_SHINSEI_CITIZEN_ACCOUNT_H_INCLUDED_


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_db.h"
#include "ngx_shinsei_form.h"


/* the fields the account pages share */

#define ngx_shinsei_field_name                                               \
    { "name", "氏名", ngx_shinsei_hint_name, "text", "name",                 \
      NGX_SHINSEI_FIELD_REQUIRED|NGX_SHINSEI_FIELD_LINE, 64 }

#define ngx_shinsei_field_name_kana                                          \
    { "name_kana", "フリガナ",                                           \
      ngx_shinsei_hint_name_kana, "text", NULL,                              \
      NGX_SHINSEI_FIELD_REQUIRED|NGX_SHINSEI_FIELD_LINE                      \
      |NGX_SHINSEI_FIELD_KANA, 64 }

#define ngx_shinsei_field_email(label, hint)                                 \
    { "email", label, hint, "email", "email",                                \
      NGX_SHINSEI_FIELD_REQUIRED|NGX_SHINSEI_FIELD_LINE                      \
      |NGX_SHINSEI_FIELD_EMAIL, 254 }

#define ngx_shinsei_field_new_password(label)                                \
    { "password", label, ngx_shinsei_hint_new_password, "password",          \
      "new-password",                                                        \
      NGX_SHINSEI_FIELD_REQUIRED|NGX_SHINSEI_FIELD_SECRET                    \
      |NGX_SHINSEI_FIELD_NEW_PASS, 128 }

#define ngx_shinsei_field_current_password(name, label)                      \
    { name, label, NULL, "password", "current-password",                     \
      NGX_SHINSEI_FIELD_REQUIRED|NGX_SHINSEI_FIELD_SECRET, 1024 }


extern const char  ngx_shinsei_hint_name[];
extern const char  ngx_shinsei_hint_name_kana[];
extern const char  ngx_shinsei_hint_new_password[];


extern ngx_shinsei_pg_stmt_t  ngx_shinsei_account_session_stmt;


ngx_int_t ngx_shinsei_account_paused(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, PGresult *res, int col, ngx_uint_t *seen);
ngx_int_t ngx_shinsei_account_failed(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_uint_t seen, ngx_str_t *id,
    ngx_str_t *email, ngx_str_t *name, ngx_shinsei_db_done_pt done);
cJSON *ngx_shinsei_account_vars(ngx_http_request_t *r, ngx_str_t *name,
    const char *path, ngx_str_t *token);
ngx_int_t ngx_shinsei_account_link(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *kind);
ngx_int_t ngx_shinsei_account_token_page(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *page, const char *state,
    ngx_shinsei_field_def_t *defs);
ngx_int_t ngx_shinsei_account_token_query(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *page, ngx_shinsei_pg_stmt_t *stmt,
    ngx_shinsei_db_done_pt done);


#endif /* _NGX_SHINSEI_CITIZEN_ACCOUNT_H_INCLUDED_ */
