
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_STRING_H_INCLUDED_
#define _NGX_SHINSEI_STRING_H_INCLUDED_


#include "ngx_shinsei_common.h"


char *ngx_shinsei_string_cstr(ngx_pool_t *pool, ngx_str_t *s);
ngx_int_t ngx_shinsei_string_utf8_valid(u_char *p, size_t len);
ngx_uint_t ngx_shinsei_string_chars(ngx_str_t *s);
ngx_int_t ngx_shinsei_string_nfkc(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);


#endif /* _NGX_SHINSEI_STRING_H_INCLUDED_ */
