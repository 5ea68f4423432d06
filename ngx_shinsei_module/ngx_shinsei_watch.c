
/*
 * Copyright (C) ngx_shinsei developers
 *
 * nginx events for sockets that libpq and libcurl own.  The library opens
 * and closes the socket; nginx only watches it, with level-triggered
 * events that mirror what the library asked for, so that no edge can be
 * missed while the library changes state without I/O.  Releasing a watch
 * frees the nginx connection without closing the descriptor.
 */


#include "ngx_shinsei_watch.h"


/*
 * Watches fd.  A library may close its socket and open another one (the
 * next host of a connection string, a reconnect): the old one is gone,
 * so its events are forgotten without a system call.
 */

ngx_int_t
ngx_shinsei_watch_fd(ngx_shinsei_watch_t *w, ngx_socket_t fd)
{
    ngx_connection_t  *c;

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      ngx_shinsei_log_prefix "the library has no socket");
        return NGX_ERROR;
    }

    if (w->c) {
        if (w->c->fd == fd) {
            return NGX_OK;
        }

        if (w->c->read->timer_set) {
            ngx_del_timer(w->c->read);
        }

        w->c->read->active = 0;
        w->c->write->active = 0;
        ngx_shinsei_watch_release(w);
    }

    c = ngx_get_connection(fd, w->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = w->data;
    c->read->handler = w->handler;
    c->write->handler = w->handler;
    c->read->log = c->log;
    c->write->log = c->log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    w->c = c;

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_watch_want(ngx_shinsei_watch_t *w, ngx_uint_t rd, ngx_uint_t wr)
{
    ngx_connection_t  *c;

    c = w->c;

    if (rd && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!rd && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (wr && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!wr && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the log of whoever the socket works for now */

void
ngx_shinsei_watch_log(ngx_shinsei_watch_t *w, ngx_log_t *log)
{
    if (w->c) {
        w->c->log = log;
        w->c->read->log = log;
        w->c->write->log = log;
    }
}


void
ngx_shinsei_watch_release(ngx_shinsei_watch_t *w)
{
    ngx_connection_t  *c;

    c = w->c;

    if (c == NULL) {
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /* the library closes the socket itself: no system call is needed */

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->idle = 0;
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
    w->c = NULL;
}
