
/*
 * Copyright (C) ngx_shinsei developers
 *
 * LISTEN/NOTIFY: one more connection per worker, outside the pool, that
 * LISTENs on the channels the module's parts asked for (the mail outbox,
 * the catalogue's copy, the session cache) and calls each channel's
 * notify() with the payload.  When the connection is (back) up, every
 * channel is called once with a NULL payload: whatever was notified while
 * it was away is to be looked at again.  It reconnects by itself, after a
 * growing pause.
 */


#include "ngx_shinsei_pg.h"


#define NGX_SHINSEI_PG_CHANNELS      4
#define NGX_SHINSEI_PG_LISTEN_FIRST  1000
#define NGX_SHINSEI_PG_LISTEN_MIN    100
#define NGX_SHINSEI_PG_LISTEN_MAX    3000


typedef enum {
    NGX_SHINSEI_PG_LISTEN_FREE = 0,
    NGX_SHINSEI_PG_LISTEN_CONNECTING,
    NGX_SHINSEI_PG_LISTEN_SENDING,
    NGX_SHINSEI_PG_LISTEN_RECEIVING,
    NGX_SHINSEI_PG_LISTEN_UP
} ngx_shinsei_pg_listen_state_e;


typedef struct {
    ngx_str_t                        channel;
    ngx_shinsei_pg_notify_pt         notify;
    void                            *data;
} ngx_shinsei_pg_channel_t;


typedef struct {
    PGconn                          *pgconn;
    ngx_shinsei_watch_t              watch;
    ngx_shinsei_pg_listen_state_e    state;
    ngx_msec_t                       deadline;
    ngx_log_t                       *log;
    char                            *sql;
    ngx_shinsei_pg_channel_t         channels[NGX_SHINSEI_PG_CHANNELS];
    ngx_uint_t                       nchannels;
    ngx_event_t                      retry;
    ngx_msec_t                       backoff;
    PGresult                        *result;
    unsigned                         exiting:1;
} ngx_shinsei_pg_listener_t;


static void ngx_shinsei_pg_listen_open(ngx_shinsei_pg_listener_t *l);
static void ngx_shinsei_pg_listen_retry(ngx_event_t *ev);
static void ngx_shinsei_pg_listen_handler(ngx_event_t *ev);
static void ngx_shinsei_pg_listen_connecting(ngx_shinsei_pg_listener_t *l);
static void ngx_shinsei_pg_listen_flush(ngx_shinsei_pg_listener_t *l);
static void ngx_shinsei_pg_listen_receive(ngx_shinsei_pg_listener_t *l);
static void ngx_shinsei_pg_listen_check(ngx_shinsei_pg_listener_t *l);
static void ngx_shinsei_pg_listen_close(ngx_shinsei_pg_listener_t *l);


static ngx_shinsei_pg_listener_t  *ngx_shinsei_pg_listener;
static ngx_connection_t            ngx_shinsei_pg_listen_dummy;


/*
 * Calls notify(channel, payload, data) for each notification on the
 * channel (a burst is one call), and with a NULL payload whenever the
 * connection comes up.
 */

ngx_int_t
ngx_shinsei_pg_listen(ngx_cycle_t *cycle, const char *channel,
    ngx_shinsei_pg_notify_pt notify, void *data)
{
    u_char                     *p;
    size_t                      len;
    ngx_uint_t                  i;
    ngx_shinsei_pg_channel_t   *ch;
    ngx_shinsei_pg_listener_t  *l;

    l = ngx_shinsei_pg_listener;

    if (l == NULL) {
        l = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_pg_listener_t));
        if (l == NULL) {
            return NGX_ERROR;
        }

        l->log = cycle->log;

        ngx_shinsei_pg_listen_dummy.fd = (ngx_socket_t) -1;

        l->retry.handler = ngx_shinsei_pg_listen_retry;
        l->retry.log = cycle->log;
        l->retry.data = &ngx_shinsei_pg_listen_dummy;
        l->retry.cancelable = 1;

        l->watch.handler = ngx_shinsei_pg_listen_handler;
        l->watch.data = l;
        l->watch.log = cycle->log;

        ngx_shinsei_pg_listener = l;
    }

    if (l->nchannels == NGX_SHINSEI_PG_CHANNELS) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      ngx_shinsei_log_prefix "too many LISTEN channels");
        return NGX_ERROR;
    }

    ch = &l->channels[l->nchannels++];

    ch->channel.len = ngx_strlen(channel);
    ch->channel.data = (u_char *) channel;
    ch->notify = notify;
    ch->data = data;

    /* "LISTEN a; LISTEN b": one round trip for all channels */

    len = 0;

    for (i = 0; i < l->nchannels; i++) {
        len += sizeof("LISTEN ; ") - 1 + l->channels[i].channel.len;
    }

    p = ngx_pnalloc(cycle->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    l->sql = (char *) p;

    for (i = 0; i < l->nchannels; i++) {
        p = ngx_sprintf(p, "LISTEN %V; ", &l->channels[i].channel);
    }

    *p = '\0';

    /*
     * still connecting, it sends the new statement once up; past that,
     * it starts again
     */

    if (l->state != NGX_SHINSEI_PG_LISTEN_FREE
        && l->state != NGX_SHINSEI_PG_LISTEN_CONNECTING)
    {
        ngx_shinsei_pg_listen_close(l);
        return NGX_OK;
    }

    if (l->state == NGX_SHINSEI_PG_LISTEN_FREE && !l->retry.timer_set) {
        ngx_shinsei_pg_listen_open(l);
    }

    return NGX_OK;
}


/* whether notifications reach this worker now */

ngx_uint_t
ngx_shinsei_pg_listening(void)
{
    return ngx_shinsei_pg_listener
           && ngx_shinsei_pg_listener->state == NGX_SHINSEI_PG_LISTEN_UP;
}


void
ngx_shinsei_pg_listen_exit_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_pg_listener_t  *l;

    l = ngx_shinsei_pg_listener;

    if (l == NULL) {
        return;
    }

    l->exiting = 1;

    ngx_shinsei_pg_listen_close(l);

    if (l->retry.timer_set) {
        ngx_del_timer(&l->retry);
    }

    ngx_shinsei_pg_listener = NULL;
}


static void
ngx_shinsei_pg_listen_open(ngx_shinsei_pg_listener_t *l)
{
    ngx_shinsei_db_conf_t  *conf;

    conf = ngx_shinsei_pg_conf();

    l->pgconn = ngx_shinsei_pg_connect_start(l->log);

    if (l->pgconn == NULL) {
        ngx_shinsei_pg_host_failed(0);
        ngx_shinsei_pg_listen_close(l);
        return;
    }

    l->state = NGX_SHINSEI_PG_LISTEN_CONNECTING;
    l->deadline = ngx_current_msec + conf->connect_timeout;

    if (ngx_shinsei_watch_fd(&l->watch, PQsocket(l->pgconn)) != NGX_OK
        || ngx_shinsei_watch_want(&l->watch, 0, 1) != NGX_OK)
    {
        ngx_shinsei_pg_listen_close(l);
        return;
    }

    ngx_add_timer(l->watch.c->read, conf->connect_timeout);
}


static void
ngx_shinsei_pg_listen_retry(ngx_event_t *ev)
{
    ngx_shinsei_pg_listener_t  *l;

    l = ngx_shinsei_pg_listener;

    if (l == NULL || l->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (l->state == NGX_SHINSEI_PG_LISTEN_FREE) {
        ngx_shinsei_pg_listen_open(l);
    }
}


static void
ngx_shinsei_pg_listen_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_shinsei_pg_listener_t  *l;

    c = ev->data;
    l = c->data;

    if (c->read->timedout) {
        c->read->timedout = 0;

        ngx_log_error(NGX_LOG_ERR, l->log, NGX_ETIMEDOUT,
                      ngx_shinsei_log_prefix "the LISTEN connection timed "
                      "out");

        if (l->state == NGX_SHINSEI_PG_LISTEN_CONNECTING) {
            ngx_shinsei_pg_host_failed(0);
        }

        ngx_shinsei_pg_listen_close(l);
        return;
    }

    switch (l->state) {

    case NGX_SHINSEI_PG_LISTEN_CONNECTING:
        ngx_shinsei_pg_listen_connecting(l);
        break;

    case NGX_SHINSEI_PG_LISTEN_SENDING:
        if (!ev->write && !PQconsumeInput(l->pgconn)) {
            ngx_shinsei_pg_log_error(l->log, "the LISTEN connection",
                                     l->pgconn);
            ngx_shinsei_pg_listen_close(l);
            break;
        }

        ngx_shinsei_pg_listen_flush(l);
        break;

    case NGX_SHINSEI_PG_LISTEN_RECEIVING:
        ngx_shinsei_pg_listen_receive(l);
        break;

    case NGX_SHINSEI_PG_LISTEN_UP:
        ngx_shinsei_pg_listen_check(l);
        break;

    default:
        break;
    }
}


static void
ngx_shinsei_pg_listen_connecting(ngx_shinsei_pg_listener_t *l)
{
    ngx_int_t       rc;
    ngx_msec_int_t  left;

    rc = ngx_shinsei_pg_connect_poll(l->pgconn, &l->watch);

    if (rc == NGX_AGAIN) {
        if (!l->watch.c->read->timer_set) {
            left = (ngx_msec_int_t) (l->deadline - ngx_current_msec);
            ngx_add_timer(l->watch.c->read, left > 0 ? left : 1);
        }

        return;
    }

    if (rc == NGX_ERROR) {
        ngx_shinsei_pg_host_failed(0);
        ngx_shinsei_pg_listen_close(l);
        return;
    }

    if (l->watch.c->read->timer_set) {
        ngx_del_timer(l->watch.c->read);
    }

    if (!PQsendQuery(l->pgconn, l->sql)) {
        ngx_shinsei_pg_log_error(l->log, "LISTEN", l->pgconn);
        ngx_shinsei_pg_listen_close(l);
        return;
    }

    l->state = NGX_SHINSEI_PG_LISTEN_SENDING;
    ngx_add_timer(l->watch.c->read, ngx_shinsei_pg_conf()->query_timeout);

    ngx_shinsei_pg_listen_flush(l);
}


static void
ngx_shinsei_pg_listen_flush(ngx_shinsei_pg_listener_t *l)
{
    switch (PQflush(l->pgconn)) {

    case 0:
        l->state = NGX_SHINSEI_PG_LISTEN_RECEIVING;

        if (ngx_shinsei_watch_want(&l->watch, 1, 0) == NGX_OK) {
            return;
        }

        break;

    case 1:
        if (ngx_shinsei_watch_want(&l->watch, 1, 1) == NGX_OK) {
            return;
        }

        break;

    default:
        ngx_shinsei_pg_log_error(l->log, "PQflush()", l->pgconn);
    }

    ngx_shinsei_pg_listen_close(l);
}


static void
ngx_shinsei_pg_listen_receive(ngx_shinsei_pg_listener_t *l)
{
    PGresult    *res;
    ngx_uint_t   i, ok;

    if (!PQconsumeInput(l->pgconn)) {
        ngx_shinsei_pg_log_error(l->log, "the LISTEN connection", l->pgconn);
        ngx_shinsei_pg_listen_close(l);
        return;
    }

    while (!PQisBusy(l->pgconn)) {

        res = PQgetResult(l->pgconn);

        if (res != NULL) {
            if (l->result == NULL
                || PQresultStatus(l->result) != PGRES_FATAL_ERROR)
            {
                PQclear(l->result);
                l->result = res;

            } else {
                PQclear(res);
            }

            continue;
        }

        ok = l->result && PQresultStatus(l->result) == PGRES_COMMAND_OK;

        PQclear(l->result);
        l->result = NULL;

        if (l->watch.c->read->timer_set) {
            ngx_del_timer(l->watch.c->read);
        }

        if (!ok) {
            ngx_shinsei_pg_log_error(l->log, "LISTEN", l->pgconn);
            ngx_shinsei_pg_listen_close(l);
            return;
        }

        /* listening: whatever was missed while away is looked at now */

        l->state = NGX_SHINSEI_PG_LISTEN_UP;
        l->backoff = 0;

        for (i = 0; i < l->nchannels; i++) {
            l->channels[i].notify(&l->channels[i].channel, NULL,
                                  l->channels[i].data);
        }

        /* notifications that came with the answer */
        ngx_shinsei_pg_listen_check(l);
        return;
    }
}


static void
ngx_shinsei_pg_listen_check(ngx_shinsei_pg_listener_t *l)
{
    ngx_str_t                  channel, payload;
    PGnotify                  *notify;
    ngx_uint_t                 i, seen;
    ngx_shinsei_pg_channel_t  *ch;

    if (l->watch.c->close
        || !PQconsumeInput(l->pgconn)
        || PQstatus(l->pgconn) != CONNECTION_OK)
    {
        if (!l->watch.c->close) {
            ngx_shinsei_pg_log_error(l->log, "the LISTEN connection",
                                     l->pgconn);
        }

        ngx_shinsei_pg_listen_close(l);
        return;
    }

    seen = 0;

    while ((notify = PQnotifies(l->pgconn)) != NULL) {
        channel.data = (u_char *) notify->relname;
        channel.len = ngx_strlen(notify->relname);
        payload.data = (u_char *) notify->extra;
        payload.len = ngx_strlen(notify->extra);

        for (i = 0; i < l->nchannels; i++) {
            ch = &l->channels[i];

            if (ch->channel.len != channel.len
                || ngx_strncmp(ch->channel.data, channel.data, channel.len)
                   != 0)
            {
                continue;
            }

            /*
             * a burst of empty notifications (the outbox, the catalogue)
             * is one call; a payload (sessions to forget) is each its own
             */

            if (payload.len == 0 && (seen & (1 << i))) {
                continue;
            }

            if (payload.len == 0) {
                seen |= 1 << i;
            }

            ch->notify(&channel, &payload, ch->data);
        }

        PQfreemem(notify);
    }
}


static void
ngx_shinsei_pg_listen_close(ngx_shinsei_pg_listener_t *l)
{
    ngx_shinsei_watch_release(&l->watch);

    if (l->result) {
        PQclear(l->result);
        l->result = NULL;
    }

    if (l->pgconn) {
        PQfinish(l->pgconn);
        l->pgconn = NULL;
    }

    l->state = NGX_SHINSEI_PG_LISTEN_FREE;

    if (l->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    l->backoff = l->backoff ? ngx_min(l->backoff * 2,
                                      NGX_SHINSEI_PG_LISTEN_MAX)
                            : NGX_SHINSEI_PG_LISTEN_MIN;

    if (!l->retry.timer_set) {
        ngx_add_timer(&l->retry, l->backoff);
    }
}
