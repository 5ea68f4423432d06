
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_FORM_H_INCLUDED_
#define _NGX_SHINSEI_FORM_H_INCLUDED_


#include "ngx_shinsei_common.h"


#define NGX_SHINSEI_FIELD_REQUIRED   0x01
#define NGX_SHINSEI_FIELD_EMAIL      0x02    /* normalized to lower case */
#define NGX_SHINSEI_FIELD_SECRET     0x04    /* never shown again */
#define NGX_SHINSEI_FIELD_NEW_PASS   0x08    /* 12 to 128, not a common one */
#define NGX_SHINSEI_FIELD_KANA       0x10    /* hiragana become katakana */
#define NGX_SHINSEI_FIELD_LINE       0x20    /* one line: no CR or LF */


typedef struct {
    const char                *name;
    const char                *label;
    const char                *hint;
    const char                *type;
    const char                *autocomplete;
    ngx_uint_t                 rules;
    ngx_uint_t                 max;          /* characters */
} ngx_shinsei_field_def_t;


#define ngx_shinsei_null_field  { NULL, NULL, NULL, NULL, NULL, 0, 0 }


ngx_int_t ngx_shinsei_form_check(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_field_def_t *defs);
ngx_int_t ngx_shinsei_form_error(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *field, const char *message);
ngx_int_t ngx_shinsei_form_render(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_field_def_t *defs,
    const char *template, ngx_uint_t status);
ngx_str_t *ngx_shinsei_form_value(ngx_shinsei_ctx_t *ctx, const char *name);
ngx_int_t ngx_shinsei_form_set(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *name, ngx_str_t *value);
ngx_int_t ngx_shinsei_form_has_errors(ngx_shinsei_ctx_t *ctx);
ngx_int_t ngx_shinsei_form_safe_path(ngx_str_t *path);
char *ngx_shinsei_form_blocklist_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_SHINSEI_FORM_H_INCLUDED_ */
