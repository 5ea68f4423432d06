
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The bottom floor: a request's context, and how a request waits for a
 * backend (the database, the thread pool, an HTTP provider) and wakes
 * when it answers.  It is nginx's own way, as in its thread and cache
 * handlers: the backend records its outcome, then ngx_shinsei_request_wake()
 * calls r->write_event_handler (the step runner of ngx_shinsei_handler.c)
 * and ngx_http_run_posted_requests().  A backend knows no page, no step
 * and no handler: only the resume function the waiting code gave.
 */


#include "ngx_shinsei_request.h"


static ngx_int_t ngx_shinsei_request_client(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_shinsei_request_check_broken(ngx_http_request_t *r);


static ngx_str_t  ngx_shinsei_request_client_name =
    ngx_string("shinsei_client");


/*
 * $shinsei_client: who a client is, for limit_req: its IPv4 address, or
 * the /64 of its IPv6 address (one home or phone gets a whole /64, and
 * would otherwise have 2^64 keys), as bytes like $binary_remote_addr.
 */

ngx_int_t
ngx_shinsei_request_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_shinsei_request_client_name, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_shinsei_request_client;

    return NGX_OK;
}


ngx_shinsei_ctx_t *
ngx_shinsei_request_ctx(ngx_http_request_t *r)
{
    ngx_shinsei_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_shinsei_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_shinsei_module);

    return ctx;
}


/*
 * From here until ngx_shinsei_request_end(), run() is called when a
 * backend wakes the request, and a client that goes away ends it.
 */

void
ngx_shinsei_request_start(ngx_http_request_t *r, ngx_http_event_handler_pt run)
{
    r->write_event_handler = run;

    if (!r->discard_body) {
        r->read_event_handler = ngx_shinsei_request_check_broken;
    }
}


/* the caller returns NGX_DONE; resume(r, data) runs at the wake */

void
ngx_shinsei_request_suspend(ngx_http_request_t *r,
    ngx_shinsei_resume_pt resume, void *data)
{
    ngx_shinsei_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    ctx->resume = resume;
    ctx->resume_data = data;
    ctx->waiting = 1;
}


/*
 * What the wake brought, for the runner: NGX_DONE while still waiting
 * (nginx calls the write handler for events of the client's socket too),
 * else what resume() answered.
 */

ngx_int_t
ngx_shinsei_request_resume(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx)
{
    ngx_shinsei_resume_pt  resume;

    if (ctx->waiting || ctx->resume == NULL) {
        return NGX_DONE;
    }

    resume = ctx->resume;
    ctx->resume = NULL;

    return resume(r, ctx->resume_data);
}


/* a backend answered: on the event loop, with the request's log */

void
ngx_shinsei_request_wake(ngx_http_request_t *r)
{
    ngx_connection_t   *c;
    ngx_shinsei_ctx_t  *ctx;

    c = r->connection;

    ctx = ngx_http_get_module_ctx(r, ngx_shinsei_module);

    if (ctx) {
        ctx->waiting = 0;
    }

    ngx_http_set_log_request(c->log, r);

    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


/* a request header nginx does not parse itself (Sec-Fetch-Site ...) */

ngx_str_t *
ngx_shinsei_request_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i].value;
        }
    }
}


void
ngx_shinsei_request_end(ngx_http_request_t *r, ngx_int_t rc)
{
    if (r->read_event_handler == ngx_shinsei_request_check_broken) {
        r->read_event_handler = ngx_http_block_reading;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_shinsei_request_client(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char               *p;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    switch (r->connection->sockaddr->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) r->connection->sockaddr;
        p = (u_char *) &sin->sin_addr;
        v->len = 4;
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) r->connection->sockaddr;
        p = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            p += 12;
            v->len = 4;

        } else {
            v->len = 8;
        }

        break;
#endif

    default:
        /* a unix socket: one key for all */
        p = (u_char *) "unix";
        v->len = 4;
        break;
    }

    v->data = ngx_pnalloc(r->pool, v->len);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(v->data, p, v->len);

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * A resident who gives up (closes the tab, a load balancer times out)
 * does not keep a database connection or a place in the queue: the
 * request ends at once, and the cleanups of its pool hand back what it
 * waited on (a query is cancelled on the server, ngx_shinsei_pg.c).
 */

static void
ngx_shinsei_request_check_broken(ngx_http_request_t *r)
{
    int                n;
    char               buf[1];
    ngx_err_t          err;
    ngx_event_t       *ev;
    ngx_connection_t  *c;

    c = r->connection;
    ev = c->read;

    if (c->error) {
        goto gone;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        /* a reset stream sets c->error */
        return;
    }
#endif

#if (NGX_HAVE_EPOLLRDHUP)
    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {
        if (!ev->pending_eof) {
            return;
        }

        ev->eof = 1;
        c->error = 1;
        goto gone;
    }
#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0) {
        /* a pipelined request waits its turn */

        if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && ev->active) {
            (void) ngx_del_event(ev, NGX_READ_EVENT, 0);
        }

        return;
    }

    if (n == -1 && err == NGX_EAGAIN) {
        return;
    }

    ev->eof = 1;
    c->error = 1;

gone:

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  ngx_shinsei_log_prefix "client went away while its "
                  "request was waiting");

    ngx_shinsei_request_end(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}
