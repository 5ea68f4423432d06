
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_WATCH_H_INCLUDED_
#define _NGX_SHINSEI_WATCH_H_INCLUDED_


#include "ngx_shinsei_common.h"


/*
 * A socket that a library (libpq, libcurl) owns and nginx only watches:
 * the events call handler with c->data set to data.
 */
typedef struct {
    ngx_connection_t          *c;
    ngx_event_handler_pt       handler;
    void                      *data;
    ngx_log_t                 *log;
} ngx_shinsei_watch_t;


ngx_int_t ngx_shinsei_watch_fd(ngx_shinsei_watch_t *w, ngx_socket_t fd);
ngx_int_t ngx_shinsei_watch_want(ngx_shinsei_watch_t *w, ngx_uint_t rd,
    ngx_uint_t wr);
void ngx_shinsei_watch_log(ngx_shinsei_watch_t *w, ngx_log_t *log);
void ngx_shinsei_watch_release(ngx_shinsei_watch_t *w);


#endif /* _NGX_SHINSEI_WATCH_H_INCLUDED_ */
