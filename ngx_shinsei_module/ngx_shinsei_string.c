
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Strings: C strings for libraries that want them (cJSON, libpq), and
 * what a text field may hold.
 */


#include "ngx_shinsei_string.h"


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
