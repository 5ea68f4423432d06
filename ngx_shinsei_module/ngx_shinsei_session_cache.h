
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_SESSION_CACHE_H_INCLUDED_
#define _NGX_SHINSEI_SESSION_CACHE_H_INCLUDED_


#include "ngx_shinsei_common.h"


typedef struct {
    ngx_uint_t                 size;         /* bytes of the zone */
    ngx_uint_t                 entries;
    ngx_uint_t                 hits;
    ngx_uint_t                 misses;
    ngx_uint_t                 forgotten;
    ngx_uint_t                 flushes;
    ngx_uint_t                 serving;      /* LISTEN is up */
} ngx_shinsei_session_cache_stats_t;


char *ngx_shinsei_session_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_shinsei_session_cache_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_shinsei_session_cache_get_stats(
    ngx_shinsei_session_cache_stats_t *st);

ngx_int_t ngx_shinsei_session_cache_get(ngx_pool_t *pool,
    ngx_shinsei_session_t *ss, ngx_uint_t kind, ngx_str_t *city,
    time_t idle, time_t absolute);
void ngx_shinsei_session_cache_put(ngx_shinsei_session_t *ss,
    ngx_uint_t kind, ngx_str_t *city);
void ngx_shinsei_session_cache_forget(u_char *hash);
void ngx_shinsei_session_cache_forget_hex(u_char *p, u_char *last);


#endif /* _NGX_SHINSEI_SESSION_CACHE_H_INCLUDED_ */
