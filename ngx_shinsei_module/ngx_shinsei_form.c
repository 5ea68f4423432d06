
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The one form validator (REQ S-FORM-3): a page declares its fields
 * (label, support text, input type, rules); ngx_shinsei_form_check()
 * normalizes and checks what was posted, ngx_shinsei_form_render() shows
 * the page again with every value kept (passwords excepted), the message
 * under each field tied by aria-describedby, and the summary at the top
 * (GOV.UK error summary; the form controls of
 * デジタル庁デザインシステム).
 */


#include "ngx_shinsei_form.h"
#include "ngx_shinsei_body.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_string.h"


typedef struct {
    const char                *field;
    ngx_str_t                  message;
} ngx_shinsei_form_err_t;


static ngx_str_t *ngx_shinsei_form_field(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, const char *name);
static ngx_int_t ngx_shinsei_form_errorf(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_field_def_t *def, const char *fmt,
    ngx_uint_t n);
static void ngx_shinsei_form_trim(ngx_str_t *v);
static ngx_int_t ngx_shinsei_form_email(ngx_str_t *v);
static ngx_int_t ngx_shinsei_form_kana(ngx_str_t *v);
static ngx_uint_t ngx_shinsei_form_common(ngx_http_request_t *r,
    ngx_str_t *v);
static ngx_int_t ngx_shinsei_form_step(u_char a, u_char b);
static ngx_uint_t ngx_shinsei_form_pattern(ngx_str_t *v);
static int ngx_libc_cdecl ngx_shinsei_form_str_cmp(const void *one,
    const void *two);
static const char *ngx_shinsei_form_error_of(ngx_shinsei_ctx_t *ctx,
    const char *field);


/* what a resident reads under a field; %s is the field's label */

static const char  ngx_shinsei_form_msg_required[] =
    "%sを入力してください";
static const char  ngx_shinsei_form_msg_line[] =
    "%sに改行は入力できません";
static const char  ngx_shinsei_form_msg_short[] =
    "%sは%ui文字以上で入力してください";
static const char  ngx_shinsei_form_msg_long[] =
    "%sは%ui文字以内で入力してください";
static const char  ngx_shinsei_form_msg_common[] =
    "よく使われていて推測されやすい%sです。"
    "ほかの人が思いつかないものにしてください";
static const char  ngx_shinsei_form_msg_email[] =
    "%sを正しい形式で入力してください"
    "（例：taro@example.jp）";
static const char  ngx_shinsei_form_msg_kana[] =
    "%sは全角カタカナで入力してください";


/* one password per line, refused whatever their case (NIST SP 800-63B) */

char *
ngx_shinsei_form_blocklist_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    u_char     *p, *last, *eol;
    ngx_str_t  *value, name, text, *entry;

    if (smcf->blocklist) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK
        || ngx_shinsei_crypto_read_file(cf, "shinsei_password_blocklist",
                                        &name, 16 * 1024 * 1024, 0, cf->pool,
                                        &text)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf->blocklist = ngx_array_create(cf->pool, 16384, sizeof(ngx_str_t));
    if (smcf->blocklist == NULL) {
        return NGX_CONF_ERROR;
    }

    last = text.data + text.len;

    for (p = text.data; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            eol = last;
        }

        if (eol > p && eol[-1] == CR) {
            eol[-1] = LF;
        }

        if (eol == p || (eol == p + 1 && *p == LF)) {
            continue;
        }

        entry = ngx_array_push(smcf->blocklist);
        if (entry == NULL) {
            return NGX_CONF_ERROR;
        }

        entry->data = p;
        entry->len = (eol > p && eol[-1] == LF) ? eol - 1 - p : eol - p;
        ngx_strlow(p, p, entry->len);
    }

    ngx_qsort(smcf->blocklist->elts, smcf->blocklist->nelts,
              sizeof(ngx_str_t), ngx_shinsei_form_str_cmp);

    return NGX_CONF_OK;
}


ngx_int_t
ngx_shinsei_form_check(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_field_def_t *defs)
{
    size_t                    n;
    ngx_str_t                *v, raw;
    ngx_uint_t                chars;
    ngx_shinsei_field_def_t  *d;

    for (d = defs; d->name; d++) {

        v = ngx_shinsei_form_field(r, ctx, d->name);
        if (v == NULL) {
            return NGX_ERROR;
        }

        if (!(d->rules & NGX_SHINSEI_FIELD_SECRET)) {
            ngx_shinsei_form_trim(v);
        }

        if (v->len == 0) {
            if ((d->rules & NGX_SHINSEI_FIELD_REQUIRED)
                && ngx_shinsei_form_errorf(r, ctx, d,
                                           ngx_shinsei_form_msg_required, 0)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        chars = ngx_shinsei_string_chars(v);

        if ((d->rules & NGX_SHINSEI_FIELD_LINE)
            && (ngx_strlchr(v->data, v->data + v->len, CR)
                || ngx_strlchr(v->data, v->data + v->len, LF)))
        {
            if (ngx_shinsei_form_errorf(r, ctx, d,
                                        ngx_shinsei_form_msg_line, 0)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (d->rules & NGX_SHINSEI_FIELD_NEW_PASS) {

            /*
             * NFKC first (README, "Passwords"): the length and the
             * blocklist are of what is hashed
             */

            raw = *v;

            if (ngx_shinsei_string_nfkc(r->pool, &raw, v) != NGX_OK) {
                return NGX_ERROR;
            }

            if (v->data != raw.data) {
                ngx_explicit_memzero(raw.data, raw.len);
            }

            chars = ngx_shinsei_string_chars(v);

            /* OWASP ASVS 4.0.3 2.1.1: 12 characters at least */

            if (chars < NGX_SHINSEI_PASSWORD_MIN || chars > 128) {
                n = chars < NGX_SHINSEI_PASSWORD_MIN
                    ? NGX_SHINSEI_PASSWORD_MIN : 128;

                if (ngx_shinsei_form_errorf(r, ctx, d,
                                            chars < NGX_SHINSEI_PASSWORD_MIN
                                            ? ngx_shinsei_form_msg_short
                                            : ngx_shinsei_form_msg_long, n)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                continue;
            }

            if (ngx_shinsei_form_common(r, v)
                || ngx_shinsei_form_pattern(v))
            {
                if (ngx_shinsei_form_errorf(r, ctx, d,
                                            ngx_shinsei_form_msg_common, 0)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            continue;
        }

        if (d->max && chars > d->max) {
            if (ngx_shinsei_form_errorf(r, ctx, d,
                                        ngx_shinsei_form_msg_long, d->max)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if ((d->rules & NGX_SHINSEI_FIELD_EMAIL)
            && ngx_shinsei_form_email(v) != NGX_OK)
        {
            if (ngx_shinsei_form_errorf(r, ctx, d,
                                        ngx_shinsei_form_msg_email, 0)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if ((d->rules & NGX_SHINSEI_FIELD_KANA)
            && ngx_shinsei_form_kana(v) != NGX_OK)
        {
            if (ngx_shinsei_form_errorf(r, ctx, d,
                                        ngx_shinsei_form_msg_kana, 0)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return ctx->errors && ctx->errors->nelts ? NGX_DECLINED : NGX_OK;
}


ngx_int_t
ngx_shinsei_form_error(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *field, const char *message)
{
    ngx_shinsei_form_err_t  *e;

    if (ctx->errors == NULL) {
        ctx->errors = ngx_array_create(r->pool, 4,
                                       sizeof(ngx_shinsei_form_err_t));
        if (ctx->errors == NULL) {
            return NGX_ERROR;
        }
    }

    e = ngx_array_push(ctx->errors);
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->field = field;
    e->message.data = (u_char *) message;
    e->message.len = ngx_strlen(message);

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_form_has_errors(ngx_shinsei_ctx_t *ctx)
{
    return ctx->errors && ctx->errors->nelts;
}


ngx_int_t
ngx_shinsei_form_render(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_field_def_t *defs, const char *template, ngx_uint_t status)
{
    u_char                   *p;
    cJSON                    *view, *fields, *f, *errors, *e;
    ngx_str_t                *v;
    ngx_uint_t                i;
    const char               *err;
    ngx_shinsei_form_err_t   *fe;
    ngx_shinsei_field_def_t  *d;
    u_char                    id[64], ids[160], href[72];

    view = ngx_shinsei_response_view(r, ctx);
    if (view == NULL) {
        return NGX_ERROR;
    }

    fields = cJSON_AddArrayToObject(view, "fields");
    if (fields == NULL) {
        return NGX_ERROR;
    }

    for (d = defs; d->name; d++) {

        f = cJSON_CreateObject();
        if (f == NULL) {
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(fields, f);

        *ngx_snprintf(id, sizeof(id) - 1, "field-%s", d->name) = '\0';

        cJSON_AddStringToObject(f, "name", d->name);
        cJSON_AddStringToObject(f, "id", (char *) id);
        cJSON_AddStringToObject(f, "label", d->label);
        cJSON_AddStringToObject(f, "type", d->type);

        if (d->autocomplete) {
            cJSON_AddStringToObject(f, "autocomplete", d->autocomplete);
        }

        if (d->rules & NGX_SHINSEI_FIELD_REQUIRED) {
            cJSON_AddTrueToObject(f, "required");
        }

        if (d->max) {
            cJSON_AddNumberToObject(f, "maxlength", (double) d->max);
        }

        /* support text and message are both read by screen readers */

        p = ids;

        if (d->hint) {
            cJSON_AddStringToObject(f, "hint", d->hint);
            p = ngx_sprintf(p, "%s-hint", id);
        }

        err = ngx_shinsei_form_error_of(ctx, d->name);

        if (err) {
            cJSON_AddStringToObject(f, "error", err);

            if (p != ids) {
                *p++ = ' ';
            }

            p = ngx_sprintf(p, "%s-error", id);
        }

        if (p != ids) {
            *p = '\0';
            cJSON_AddStringToObject(f, "describedby", (char *) ids);
        }

        v = ngx_shinsei_body_field(ctx->form, d->name);

        if (v && v->len && !(d->rules & NGX_SHINSEI_FIELD_SECRET)) {
            cJSON_AddStringToObject(f, "value",
                                    ngx_shinsei_string_cstr(r->pool, v));
        }
    }

    if (status == 0) {
        status = (ngx_shinsei_form_has_errors(ctx)
                  || ctx->csrf_refused)
                 ? NGX_SHINSEI_HTTP_UNPROCESSABLE : NGX_HTTP_OK;
    }

    if (ngx_shinsei_form_has_errors(ctx)) {
        errors = cJSON_AddArrayToObject(view, "errors");
        if (errors == NULL) {
            return NGX_ERROR;
        }

        fe = ctx->errors->elts;

        for (i = 0; i < ctx->errors->nelts; i++) {
            e = cJSON_CreateObject();
            if (e == NULL) {
                return NGX_ERROR;
            }

            cJSON_AddItemToArray(errors, e);
            cJSON_AddStringToObject(e, "message",
                                    ngx_shinsei_string_cstr(r->pool,
                                                            &fe[i].message));

            if (fe[i].field) {
                *ngx_snprintf(href, sizeof(href) - 1, "#field-%s",
                              fe[i].field) = '\0';
                cJSON_AddStringToObject(e, "href", (char *) href);
            }
        }

        cJSON_AddTrueToObject(view, "has_errors");
    }

    return ngx_shinsei_response_render(r, ctx, template, status);
}


ngx_str_t *
ngx_shinsei_form_value(ngx_shinsei_ctx_t *ctx, const char *name)
{
    return ngx_shinsei_body_field(ctx->form, name);
}


/* a value shown in a form before anything is posted (current data) */

ngx_int_t
ngx_shinsei_form_set(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *name, ngx_str_t *value)
{
    ngx_str_t  *v;

    v = ngx_shinsei_form_field(r, ctx, name);
    if (v == NULL) {
        return NGX_ERROR;
    }

    *v = *value;

    return NGX_OK;
}


/*
 * A path to return to after login: same site only.  "//host" and
 * "/\host" are other sites to browsers; control characters are refused.
 */

ngx_int_t
ngx_shinsei_form_safe_path(ngx_str_t *path)
{
    u_char  *p;

    if (path->len == 0 || path->len > 512 || path->data[0] != '/') {
        return NGX_DECLINED;
    }

    if (path->len > 1 && (path->data[1] == '/' || path->data[1] == '\\')) {
        return NGX_DECLINED;
    }

    for (p = path->data; p < path->data + path->len; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '\\') {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_str_t *
ngx_shinsei_form_field(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *name)
{
    ngx_str_t            *v;
    ngx_shinsei_field_t  *f;

    v = ngx_shinsei_body_field(ctx->form, name);
    if (v) {
        return v;
    }

    if (ctx->form == NULL) {
        ctx->form = ngx_array_create(r->pool, 4, sizeof(ngx_shinsei_field_t));
        if (ctx->form == NULL) {
            return NULL;
        }
    }

    /* a field not posted at all is an empty one */

    f = ngx_array_push(ctx->form);
    if (f == NULL) {
        return NULL;
    }

    ngx_memzero(f, sizeof(ngx_shinsei_field_t));
    f->name.data = (u_char *) name;
    f->name.len = ngx_strlen(name);
    f->value.data = (u_char *) "";

    return &f->value;
}


static ngx_int_t
ngx_shinsei_form_errorf(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    ngx_shinsei_field_def_t *def, const char *fmt, ngx_uint_t n)
{
    u_char  *msg, *p;
    size_t   len;

    len = ngx_strlen(fmt) + ngx_strlen(def->label) + NGX_INT_T_LEN + 1;

    msg = ngx_pnalloc(r->pool, len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    p = n ? ngx_snprintf(msg, len - 1, fmt, def->label, n)
          : ngx_snprintf(msg, len - 1, fmt, def->label);
    *p = '\0';

    return ngx_shinsei_form_error(r, ctx, def->name, (char *) msg);
}


static void
ngx_shinsei_form_trim(ngx_str_t *v)
{
    /* ASCII white space and U+3000 IDEOGRAPHIC SPACE at both ends */

    for ( ;; ) {
        if (v->len && (v->data[0] == ' ' || v->data[0] == '\t'
                       || v->data[0] == CR || v->data[0] == LF))
        {
            v->data++;
            v->len--;
            continue;
        }

        if (v->len >= 3 && v->data[0] == 0xe3 && v->data[1] == 0x80
            && v->data[2] == 0x80)
        {
            v->data += 3;
            v->len -= 3;
            continue;
        }

        break;
    }

    for ( ;; ) {
        if (v->len && (v->data[v->len - 1] == ' '
                       || v->data[v->len - 1] == '\t'
                       || v->data[v->len - 1] == CR
                       || v->data[v->len - 1] == LF))
        {
            v->len--;
            continue;
        }

        if (v->len >= 3 && v->data[v->len - 3] == 0xe3
            && v->data[v->len - 2] == 0x80 && v->data[v->len - 1] == 0x80)
        {
            v->len -= 3;
            continue;
        }

        break;
    }
}


/*
 * An address as people type them: local@domain, ASCII, the local part of
 * RFC 5322 atoms and dots, a domain of at least two LDH labels; at most
 * 254 octets (RFC 5321 4.5.3.1).  Normalized to lower case.
 */

static ngx_int_t
ngx_shinsei_form_email(ngx_str_t *v)
{
    u_char      *p, *at, *last, *label;
    ngx_uint_t   dots;

    if (v->len > 254) {
        return NGX_ERROR;
    }

    last = v->data + v->len;
    at = NULL;

    for (p = v->data; p < last; p++) {
        if (*p == '@') {
            if (at) {
                return NGX_ERROR;
            }

            at = p;
        }
    }

    if (at == NULL || at == v->data || at - v->data > 64 || at + 1 == last) {
        return NGX_ERROR;
    }

    for (p = v->data; p < at; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || ngx_strchr("!#$%&'*+/=?^_`{|}~.-", *p)))
        {
            return NGX_ERROR;
        }

        if (*p == '.' && (p == v->data || p + 1 == at || p[1] == '.')) {
            return NGX_ERROR;
        }
    }

    dots = 0;
    label = at + 1;

    for (p = at + 1; p <= last; p++) {

        if (p == last || *p == '.') {
            if (p == label || p - label > 63
                || *label == '-' || p[-1] == '-')
            {
                return NGX_ERROR;
            }

            if (p < last) {
                dots++;
            }

            label = p + 1;
            continue;
        }

        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-'))
        {
            return NGX_ERROR;
        }
    }

    if (dots == 0) {
        return NGX_ERROR;
    }

    for (p = v->data; p < last; p++) {
        *p = ngx_tolower(*p);
    }

    return NGX_OK;
}


/* フリガナ: katakana, the long vowel mark, middle dot and spaces */

static ngx_int_t
ngx_shinsei_form_kana(ngx_str_t *v)
{
    u_char      *p, *last;
    ngx_uint_t   cp;

    last = v->data + v->len;

    for (p = v->data; p < last; /* void */ ) {

        if (*p == ' ') {
            p++;
            continue;
        }

        if (last - p < 3 || p[0] != 0xe3) {
            return NGX_ERROR;
        }

        cp = ((p[0] & 0x0f) << 12) | ((p[1] & 0x3f) << 6) | (p[2] & 0x3f);

        /* hiragana as typed by many become katakana */

        if (cp >= 0x3041 && cp <= 0x3096) {
            cp += 0x60;
            p[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            p[2] = (u_char) (0x80 | (cp & 0x3f));
        }

        if (!(cp == 0x3000 || (cp >= 0x30a1 && cp <= 0x30fe))) {
            return NGX_ERROR;
        }

        p += 3;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_shinsei_form_common(ngx_http_request_t *r, ngx_str_t *v)
{
    u_char                   *lower;
    ngx_int_t                 cmp;
    ngx_str_t                *list;
    ngx_uint_t                lo, hi, mid, i;
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_shinsei_module);

    if (smcf->blocklist == NULL || smcf->blocklist->nelts == 0) {
        return 0;
    }

    lower = ngx_pnalloc(r->pool, v->len);
    if (lower == NULL) {
        return 0;
    }

    for (i = 0; i < v->len; i++) {
        lower[i] = ngx_tolower(v->data[i]);
    }

    list = smcf->blocklist->elts;
    lo = 0;
    hi = smcf->blocklist->nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        cmp = ngx_memn2cmp(list[mid].data, lower, list[mid].len, v->len);

        if (cmp == 0) {
            ngx_explicit_memzero(lower, v->len);
            return 1;
        }

        if (cmp < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    ngx_explicit_memzero(lower, v->len);

    return 0;
}


/* the step from one character to the next; digits count on past 9 to 0 */

static ngx_int_t
ngx_shinsei_form_step(u_char a, u_char b)
{
    ngx_int_t  d;

    d = (ngx_int_t) b - (ngx_int_t) a;

    if (a >= '0' && a <= '9' && b >= '0' && b <= '9' && (d == 9 || d == -9)) {
        return d > 0 ? -1 : 1;
    }

    return d;
}


/*
 * What lists of common passwords leave out because a rule finds them:
 * one character repeated ("aaaaaaaa"), one short block repeated
 * ("abcabcabc"), a run up or down ("123456789012", "098765432109",
 * "abcdefghijkl": digits go on from 9 to 0).
 */

static ngx_uint_t
ngx_shinsei_form_pattern(ngx_str_t *v)
{
    u_char      *p;
    ngx_int_t    step;
    ngx_uint_t   block, i;

    for (block = 1; block <= 4 && block < v->len; block++) {

        if (v->len % block) {
            continue;
        }

        for (i = block; i < v->len; i++) {
            if (v->data[i] != v->data[i - block]) {
                break;
            }
        }

        if (i == v->len) {
            return 1;
        }
    }

    step = ngx_shinsei_form_step(v->data[0], v->data[1]);

    if (step != 1 && step != -1) {
        return 0;
    }

    for (p = v->data + 1; p < v->data + v->len; p++) {
        if (ngx_shinsei_form_step(p[-1], p[0]) != step) {
            return 0;
        }
    }

    return 1;
}


static const char *
ngx_shinsei_form_error_of(ngx_shinsei_ctx_t *ctx, const char *field)
{
    ngx_uint_t               i;
    ngx_shinsei_form_err_t  *e;

    if (ctx->errors == NULL) {
        return NULL;
    }

    e = ctx->errors->elts;

    for (i = 0; i < ctx->errors->nelts; i++) {
        if (e[i].field && ngx_strcmp(e[i].field, field) == 0) {
            return (const char *) e[i].message.data;
        }
    }

    return NULL;
}


static int ngx_libc_cdecl
ngx_shinsei_form_str_cmp(const void *one, const void *two)
{
    const ngx_str_t  *a = one;
    const ngx_str_t  *b = two;

    return (int) ngx_memn2cmp(a->data, b->data, a->len, b->len);
}
