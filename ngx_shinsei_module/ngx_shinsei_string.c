
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Strings: C strings for libraries that want them (cJSON, libpq), what a
 * text field may hold, and Unicode normalization (libunistring).
 */


#include "ngx_shinsei_string.h"

#include <uninorm.h>


/* a NUL-terminated copy in pool, or NULL */

char *
ngx_shinsei_string_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, s->data, s->len) = '\0';

    return (char *) p;
}


/*
 * UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates,
 * nothing above U+10FFFF.  NUL and the other C0 controls but TAB, LF
 * and CR are refused as well: no form field needs them.
 */

ngx_int_t
ngx_shinsei_string_utf8_valid(u_char *p, size_t len)
{
    u_char  *last, c;

    last = p + len;

    while (p < last) {
        c = *p;

        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                return NGX_ERROR;
            }

            if (c == 0x7f) {
                return NGX_ERROR;
            }

            p++;
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            if (last - p < 2 || (p[1] & 0xc0) != 0x80) {
                return NGX_ERROR;
            }

            p += 2;
            continue;
        }

        if (c >= 0xe0 && c <= 0xef) {
            if (last - p < 3
                || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
                || (c == 0xe0 && p[1] < 0xa0)
                || (c == 0xed && p[1] > 0x9f))
            {
                return NGX_ERROR;
            }

            p += 3;
            continue;
        }

        if (c >= 0xf0 && c <= 0xf4) {
            if (last - p < 4
                || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
                || (p[3] & 0xc0) != 0x80
                || (c == 0xf0 && p[1] < 0x90)
                || (c == 0xf4 && p[1] > 0x8f))
            {
                return NGX_ERROR;
            }

            p += 4;
            continue;
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NFKC (Unicode Standard Annex #15) of valid UTF-8, into pool: the forms
 * a person cannot tell apart become one, so full-width and half-width
 * digits typed on two phones are the same password.  A buffer
 * libunistring allocated is wiped: this is used for passwords.
 */

ngx_int_t
ngx_shinsei_string_nfkc(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *out)
{
    size_t    len, room;
    uint8_t  *buf, *res;

    /* most text does not grow; the rare one that does gets a new buffer */

    room = in->len + 16;

    buf = ngx_pnalloc(pool, room);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    len = room;

    res = u8_normalize(UNINORM_NFKC, in->data, in->len, buf, &len);
    if (res == NULL) {
        ngx_explicit_memzero(buf, room);
        return NGX_ERROR;
    }

    if (res == buf) {
        out->data = buf;
        out->len = len;
        return NGX_OK;
    }

    ngx_explicit_memzero(buf, room);

    out->data = ngx_pnalloc(pool, len);

    if (out->data) {
        ngx_memcpy(out->data, res, len);
        out->len = len;
    }

    ngx_explicit_memzero(res, len);
    free(res);

    return out->data ? NGX_OK : NGX_ERROR;
}


/* characters, not bytes: what "at most N characters" counts */

ngx_uint_t
ngx_shinsei_string_chars(ngx_str_t *s)
{
    u_char      *p;
    ngx_uint_t   n;

    n = 0;

    for (p = s->data; p < s->data + s->len; p++) {
        if ((*p & 0xc0) != 0x80) {
            n++;
        }
    }

    return n;
}
