
/*
 * Copyright (C) ngx_shinsei developers
 *
 * A per-worker pool of PostgreSQL connections driven by nginx events.
 *
 * Each connection is one state machine: connecting -> idle -> sending ->
 * receiving -> idle.  libpq owns the socket; nginx only watches it with
 * level-triggered events that mirror what libpq asked for, so no edge can
 * be missed while libpq changes state without I/O.  A connection that timed
 * out, broke or failed to connect is discarded; new connections are opened
 * on demand, after a growing pause once the server was found down.
 */


#include "ngx_shinsei_pg.h"


#define NGX_SHINSEI_PG_BACKOFF_MIN   100
#define NGX_SHINSEI_PG_BACKOFF_MAX   3000
#define NGX_SHINSEI_PG_MAX_STMTS     512


typedef enum {
    NGX_SHINSEI_PG_CONN_FREE = 0,
    NGX_SHINSEI_PG_CONN_CONNECTING,
    NGX_SHINSEI_PG_CONN_IDLE,
    NGX_SHINSEI_PG_CONN_SENDING,
    NGX_SHINSEI_PG_CONN_RECEIVING,
    NGX_SHINSEI_PG_CONN_LISTENING
} ngx_shinsei_pg_conn_state_e;


typedef struct {
    PGconn                        *pgconn;
    ngx_connection_t              *c;
    ngx_shinsei_pg_conn_state_e    state;
    ngx_shinsei_pg_query_t        *query;
    PGresult                      *result;
    ngx_queue_t                    queue;
    uint8_t                        prepared[NGX_SHINSEI_PG_MAX_STMTS / 8];
    ngx_uint_t                     preparing;    /* statement id, or 0 */
    ngx_msec_t                     deadline;     /* of the connect */
    unsigned                       reused:1;
} ngx_shinsei_pg_conn_t;


#define NGX_SHINSEI_PG_CHANNELS  4


typedef struct {
    ngx_str_t                      channel;
    ngx_shinsei_pg_notify_pt       notify;
    void                          *data;
} ngx_shinsei_pg_channel_t;


typedef struct {
    ngx_shinsei_db_conf_t         *conf;
    ngx_log_t                     *log;
    ngx_shinsei_pg_conn_t         *conns;
    ngx_queue_t                    idle;
    ngx_queue_t                    waiting;
    ngx_msec_t                     retry_at;
    ngx_uint_t                     host;         /* of conf->hosts */
    ngx_uint_t                     nstmts;
    ngx_shinsei_pg_stats_t         stats;

    /* one more connection, outside the pool, for LISTEN */
    ngx_shinsei_pg_conn_t          listener;
    char                          *listen_sql;
    ngx_shinsei_pg_channel_t       channels[NGX_SHINSEI_PG_CHANNELS];
    ngx_uint_t                     nchannels;
    ngx_event_t                    listen_retry;
    ngx_msec_t                     listen_backoff;
    unsigned                       exiting:1;
} ngx_shinsei_pg_pool_t;


static void ngx_shinsei_pg_dispatch(ngx_shinsei_pg_query_t *q);
static ngx_int_t ngx_shinsei_pg_connect(void);
static ngx_int_t ngx_shinsei_pg_open(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_listen_retry(ngx_event_t *ev);
static void ngx_shinsei_pg_listen_check(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_event_handler(ngx_event_t *ev);
static void ngx_shinsei_pg_connect_poll(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_start(ngx_shinsei_pg_conn_t *pc,
    ngx_shinsei_pg_query_t *q);
static ngx_int_t ngx_shinsei_pg_send_query(ngx_shinsei_pg_conn_t *pc,
    ngx_shinsei_pg_query_t *q);
static ngx_int_t ngx_shinsei_pg_flush(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_refill(void);
static void ngx_shinsei_pg_receive(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_idle_check(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_complete(ngx_shinsei_pg_conn_t *pc,
    ngx_shinsei_pg_status_e status);
static void ngx_shinsei_pg_release(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_close(ngx_shinsei_pg_conn_t *pc);
static ngx_int_t ngx_shinsei_pg_watch(ngx_shinsei_pg_conn_t *pc);
static ngx_int_t ngx_shinsei_pg_want(ngx_shinsei_pg_conn_t *pc,
    ngx_uint_t rd, ngx_uint_t wr);
static void ngx_shinsei_pg_unwatch(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_backoff(void);
static void ngx_shinsei_pg_next_host(ngx_shinsei_pg_conn_t *pc);
static char *ngx_shinsei_pg_split(ngx_conf_t *cf, const char *list,
    ngx_array_t *out);
static u_char *ngx_shinsei_pg_quote(u_char *p, const char *keyword,
    ngx_str_t *value);
static void ngx_shinsei_pg_fail_waiting(void);
static void ngx_shinsei_pg_post_done(ngx_shinsei_pg_query_t *q,
    ngx_shinsei_pg_status_e status);
static void ngx_shinsei_pg_wait_handler(ngx_event_t *ev);
static void ngx_shinsei_pg_notice(void *arg, const char *message);
static void ngx_shinsei_pg_log_error(ngx_log_t *log, const char *what,
    PGconn *pgconn);


static ngx_shinsei_pg_pool_t  *ngx_shinsei_pg_pool;
static ngx_connection_t        ngx_shinsei_pg_dummy;


/*
 * At configuration load: one connection string per host, so that each
 * host gets its own connect timeout (libpq leaves per-host timeouts of
 * PQconnectPoll() to the application), and no host name that libpq would
 * resolve with a blocking lookup inside a worker.
 */

char *
ngx_shinsei_pg_parse_hosts(ngx_conf_t *cf, ngx_shinsei_db_conf_t *db,
    PQconninfoOption *opts)
{
    u_char            *p, addr[16];
    size_t             len;
    ngx_str_t         *h, *a, *pt, *out, value;
    ngx_uint_t         i, n;
    ngx_array_t        hosts, addrs, ports;
    PQconninfoOption  *o;

    if (ngx_array_init(&hosts, cf->temp_pool, 4, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&addrs, cf->temp_pool, 4, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&ports, cf->temp_pool, 4, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    len = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        if (ngx_strcmp(o->keyword, "host") == 0) {
            if (ngx_shinsei_pg_split(cf, o->val, &hosts) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            if (ngx_shinsei_pg_split(cf, o->val, &addrs) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            if (ngx_shinsei_pg_split(cf, o->val, &ports) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }
        }

        len += ngx_strlen(o->keyword) + 2 * ngx_strlen(o->val) + 4;
    }

    n = ngx_max(ngx_max(hosts.nelts, addrs.nelts), 1);

    if ((hosts.nelts > 1 && addrs.nelts > 1 && hosts.nelts != addrs.nelts)
        || (ports.nelts > 1 && ports.nelts != n))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_db\": host, hostaddr and port lists "
                           "differ in length");
        return NGX_CONF_ERROR;
    }

    h = hosts.elts;
    a = addrs.elts;
    pt = ports.elts;

    for (i = 0; i < hosts.nelts; i++) {

        if ((addrs.nelts > i && a[i].len) || h[i].len == 0
            || h[i].data[0] == '/' || h[i].data[0] == '@')
        {
            continue;
        }

        if (ngx_inet_addr(h[i].data, h[i].len) != INADDR_NONE) {
            continue;
        }

#if (NGX_HAVE_INET6)
        if (ngx_inet6_addr(h[i].data, h[i].len, addr) == NGX_OK) {
            continue;
        }
#endif

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_db\": host \"%V\" is a name that "
                           "libpq would resolve with a blocking lookup in "
                           "the worker: give its address (host=IP, or "
                           "hostaddr=IP beside the name), or a socket "
                           "directory", &h[i]);
        return NGX_CONF_ERROR;
    }

    db->hosts = ngx_array_create(cf->pool, n, sizeof(ngx_str_t));
    if (db->hosts == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < n; i++) {

        out = ngx_array_push(db->hosts);
        if (out == NULL) {
            return NGX_CONF_ERROR;
        }

        out->data = ngx_pnalloc(cf->pool, len + 1);
        if (out->data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = out->data;

        for (o = opts; o->keyword; o++) {
            if (o->val == NULL) {
                continue;
            }

            if (ngx_strcmp(o->keyword, "host") == 0) {
                value = hosts.nelts > i ? h[i] : h[0];

            } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
                value = addrs.nelts > i ? a[i] : a[0];

            } else if (ngx_strcmp(o->keyword, "port") == 0) {
                value = ports.nelts > i ? pt[i] : pt[0];

            } else {
                value.data = (u_char *) o->val;
                value.len = ngx_strlen(o->val);
            }

            if (value.len) {
                p = ngx_shinsei_pg_quote(p, o->keyword, &value);
            }
        }

        *p = '\0';
        out->len = p - out->data;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_shinsei_pg_init_process(ngx_cycle_t *cycle, ngx_shinsei_db_conf_t *conf)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_pg_pool_t));
    if (pool == NULL) {
        return NGX_ERROR;
    }

    pool->conns = ngx_pcalloc(cycle->pool,
                              conf->pool_size * sizeof(ngx_shinsei_pg_conn_t));
    if (pool->conns == NULL) {
        return NGX_ERROR;
    }

    pool->conf = conf;
    pool->log = cycle->log;
    pool->stats.size = conf->pool_size;

    ngx_queue_init(&pool->idle);
    ngx_queue_init(&pool->waiting);

    ngx_shinsei_pg_pool = pool;

    return NGX_OK;
}


void
ngx_shinsei_pg_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t              i;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    if (pool == NULL) {
        return;
    }

    pool->exiting = 1;

    for (i = 0; i < pool->conf->pool_size; i++) {
        if (pool->conns[i].state != NGX_SHINSEI_PG_CONN_FREE) {
            ngx_shinsei_pg_close(&pool->conns[i]);
        }
    }

    if (pool->listener.state != NGX_SHINSEI_PG_CONN_FREE) {
        ngx_shinsei_pg_close(&pool->listener);
    }

    if (pool->listen_retry.timer_set) {
        ngx_del_timer(&pool->listen_retry);
    }

    ngx_shinsei_pg_pool = NULL;
}


void
ngx_shinsei_pg_send(ngx_shinsei_pg_query_t *q)
{
    q->status = NGX_SHINSEI_PG_OK;
    q->result = NULL;
    q->conn = NULL;
    q->waiting = 0;
    q->retried = 0;

    ngx_memzero(&q->event, sizeof(ngx_event_t));
    q->event.handler = ngx_shinsei_pg_wait_handler;
    q->event.data = q;
    q->event.log = q->log;

    ngx_shinsei_pg_pool->stats.queries++;

    ngx_shinsei_pg_dispatch(q);
}


void
ngx_shinsei_pg_cancel(ngx_shinsei_pg_query_t *q)
{
    ngx_shinsei_pg_conn_t  *pc;

    if (q->waiting) {
        ngx_queue_remove(&q->queue);
        q->waiting = 0;
        ngx_shinsei_pg_pool->stats.waiting--;
    }

    if (q->event.timer_set) {
        ngx_del_timer(&q->event);
    }

    if (q->event.posted) {
        ngx_delete_posted_event(&q->event);
    }

    pc = q->conn;

    if (pc != NULL) {
        /* the result is read and thrown away; the connection stays */
        pc->query = NULL;
        pc->c->log = ngx_shinsei_pg_pool->log;
        pc->c->read->log = ngx_shinsei_pg_pool->log;
        pc->c->write->log = ngx_shinsei_pg_pool->log;
        q->conn = NULL;
    }
}


void
ngx_shinsei_pg_get_stats(ngx_shinsei_pg_stats_t *st)
{
    ngx_uint_t              i;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    *st = pool->stats;
    st->open = 0;
    st->idle = 0;
    st->busy = 0;
    st->connecting = 0;

    for (i = 0; i < pool->conf->pool_size; i++) {

        switch (pool->conns[i].state) {

        case NGX_SHINSEI_PG_CONN_FREE:
            continue;

        case NGX_SHINSEI_PG_CONN_CONNECTING:
            st->connecting++;
            break;

        case NGX_SHINSEI_PG_CONN_IDLE:
            st->idle++;
            break;

        default:
            st->busy++;
        }

        st->open++;
    }
}


/*
 * Keeps a connection LISTENing on channels and calls each channel's
 * notify() on its notifications; it reconnects by itself after the server
 * went away, and every notify() is called once then too (payload NULL),
 * as notifications may have been lost.  Called at process start.
 */

ngx_int_t
ngx_shinsei_pg_listen(ngx_cycle_t *cycle, const char *channel,
    ngx_shinsei_pg_notify_pt notify, void *data)
{
    u_char                    *p;
    size_t                     len;
    ngx_uint_t                 i;
    ngx_shinsei_pg_pool_t     *pool;
    ngx_shinsei_pg_channel_t  *ch;

    pool = ngx_shinsei_pg_pool;

    if (pool->nchannels == NGX_SHINSEI_PG_CHANNELS) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      ngx_shinsei_log_prefix "too many LISTEN channels");
        return NGX_ERROR;
    }

    ch = &pool->channels[pool->nchannels++];

    ch->channel.len = ngx_strlen(channel);
    ch->channel.data = (u_char *) channel;
    ch->notify = notify;
    ch->data = data;

    /* "LISTEN a; LISTEN b": one round trip for all channels */

    len = 0;

    for (i = 0; i < pool->nchannels; i++) {
        len += sizeof("LISTEN ; ") - 1 + pool->channels[i].channel.len;
    }

    p = ngx_pnalloc(cycle->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    pool->listen_sql = (char *) p;

    for (i = 0; i < pool->nchannels; i++) {
        p = ngx_sprintf(p, "LISTEN %V; ", &pool->channels[i].channel);
    }

    *p = '\0';

    if (pool->nchannels > 1) {
        /*
         * still connecting, it sends the new listen_sql once up; past
         * that, it starts again (it reconnects by itself)
         */

        if (pool->listener.state != NGX_SHINSEI_PG_CONN_FREE
            && pool->listener.state != NGX_SHINSEI_PG_CONN_CONNECTING)
        {
            ngx_shinsei_pg_close(&pool->listener);
        }

        return NGX_OK;
    }

    ngx_shinsei_pg_dummy.fd = (ngx_socket_t) -1;

    pool->listen_retry.handler = ngx_shinsei_pg_listen_retry;
    pool->listen_retry.log = pool->log;
    pool->listen_retry.data = &ngx_shinsei_pg_dummy;
    pool->listen_retry.cancelable = 1;

    if (ngx_shinsei_pg_open(&pool->listener) != NGX_OK) {
        ngx_add_timer(&pool->listen_retry, 1000);
    }

    return NGX_OK;
}


/* whether notifications reach this worker now */

ngx_uint_t
ngx_shinsei_pg_listening(void)
{
    return ngx_shinsei_pg_pool
           && ngx_shinsei_pg_pool->listener.state
              == NGX_SHINSEI_PG_CONN_LISTENING;
}


static void
ngx_shinsei_pg_dispatch(ngx_shinsei_pg_query_t *q)
{
    ngx_uint_t              i, open;
    ngx_queue_t            *head;
    ngx_shinsei_pg_pool_t  *pool;
    ngx_shinsei_pg_conn_t  *pc;

    pool = ngx_shinsei_pg_pool;

    if (!ngx_queue_empty(&pool->idle)) {
        head = ngx_queue_head(&pool->idle);
        ngx_queue_remove(head);
        pc = ngx_queue_data(head, ngx_shinsei_pg_conn_t, queue);
        ngx_shinsei_pg_start(pc, q);
        return;
    }

    open = 0;

    for (i = 0; i < pool->conf->pool_size; i++) {
        if (pool->conns[i].state != NGX_SHINSEI_PG_CONN_FREE) {
            open++;
        }
    }

    if (open < pool->conf->pool_size
        && (ngx_msec_int_t) (ngx_current_msec - pool->retry_at) >= 0)
    {
        if (ngx_shinsei_pg_connect() == NGX_OK) {
            open++;
        }
    }

    if (open == 0 || pool->stats.waiting >= pool->conf->queue_size) {
        ngx_shinsei_pg_post_done(q, NGX_SHINSEI_PG_UNAVAILABLE);
        return;
    }

    /* a connection being opened or returned takes the first in line */

    ngx_queue_insert_tail(&pool->waiting, &q->queue);
    q->waiting = 1;
    pool->stats.waiting++;

    ngx_add_timer(&q->event, pool->conf->queue_timeout);
}


static ngx_int_t
ngx_shinsei_pg_connect(void)
{
    ngx_uint_t              i;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    for (i = 0; i < pool->conf->pool_size; i++) {
        if (pool->conns[i].state == NGX_SHINSEI_PG_CONN_FREE) {
            if (ngx_shinsei_pg_open(&pool->conns[i]) != NGX_OK) {
                ngx_shinsei_pg_next_host(&pool->conns[i]);
                return NGX_ERROR;
            }

            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_shinsei_pg_open(ngx_shinsei_pg_conn_t *pc)
{
    ngx_str_t              *host;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pool->stats.connects++;

    host = pool->conf->hosts->elts;
    pc->pgconn = PQconnectStart((char *) host[pool->host].data);

    if (pc->pgconn == NULL) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      ngx_shinsei_log_prefix "PQconnectStart() failed: "
                      "out of memory");
        return NGX_ERROR;
    }

    if (PQstatus(pc->pgconn) == CONNECTION_BAD) {
        ngx_shinsei_pg_log_error(pool->log, "connection to the database",
                                 pc->pgconn);
        goto failed;
    }

    if (PQsetnonblocking(pc->pgconn, 1) == -1) {
        ngx_shinsei_pg_log_error(pool->log, "PQsetnonblocking()",
                                 pc->pgconn);
        goto failed;
    }

    PQsetNoticeProcessor(pc->pgconn, ngx_shinsei_pg_notice, pool->log);

    pc->deadline = ngx_current_msec + pool->conf->connect_timeout;
    pc->state = NGX_SHINSEI_PG_CONN_CONNECTING;
    pc->reused = 0;
    pc->preparing = 0;
    ngx_memzero(pc->prepared, sizeof(pc->prepared));

    /* libpq: before the first PQconnectPoll(), wait as if for writing */

    if (ngx_shinsei_pg_watch(pc) != NGX_OK
        || ngx_shinsei_pg_want(pc, 0, 1) != NGX_OK)
    {
        pool->stats.connect_failures++;
        ngx_shinsei_pg_close(pc);
        return NGX_ERROR;
    }

    /* ngx_shinsei_pg_watch() armed the connect timeout */

    return NGX_OK;

failed:

    PQfinish(pc->pgconn);
    pc->pgconn = NULL;
    pool->stats.connect_failures++;

    return NGX_ERROR;
}


static void
ngx_shinsei_pg_event_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_shinsei_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    if (c->read->timedout) {
        c->read->timedout = 0;

        if (pc->state == NGX_SHINSEI_PG_CONN_CONNECTING) {
            ngx_log_error(NGX_LOG_ERR, ngx_shinsei_pg_pool->log, NGX_ETIMEDOUT,
                          ngx_shinsei_log_prefix
                          "connection to the database timed out");
            ngx_shinsei_pg_pool->stats.connect_failures++;

            ngx_shinsei_pg_next_host(pc);
            ngx_shinsei_pg_close(pc);
            ngx_shinsei_pg_refill();
            ngx_shinsei_pg_fail_waiting();
            return;
        }

        ngx_log_error(NGX_LOG_ERR, c->log, NGX_ETIMEDOUT,
                      ngx_shinsei_log_prefix "query timed out, "
                      "the connection is discarded");
        ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_TIMEDOUT);
        return;
    }

    switch (pc->state) {

    case NGX_SHINSEI_PG_CONN_CONNECTING:
        ngx_shinsei_pg_connect_poll(pc);
        break;

    case NGX_SHINSEI_PG_CONN_SENDING:
        if (!ev->write && !PQconsumeInput(pc->pgconn)) {
            ngx_shinsei_pg_log_error(c->log, "PQconsumeInput()", pc->pgconn);
            ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_UNAVAILABLE);
            break;
        }

        if (ngx_shinsei_pg_flush(pc) != NGX_OK) {
            ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_UNAVAILABLE);
        }

        break;

    case NGX_SHINSEI_PG_CONN_RECEIVING:
        ngx_shinsei_pg_receive(pc);
        break;

    case NGX_SHINSEI_PG_CONN_IDLE:
        ngx_shinsei_pg_idle_check(pc);
        break;

    case NGX_SHINSEI_PG_CONN_LISTENING:
        ngx_shinsei_pg_listen_check(pc);
        break;

    default:
        break;
    }
}


static void
ngx_shinsei_pg_connect_poll(ngx_shinsei_pg_conn_t *pc)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    /*
     * libpq may close the socket and open another one inside
     * PQconnectPoll() (next host of a multi-host string, SSL fallback),
     * so the old socket is unregistered while it is still open.
     */

    (void) ngx_shinsei_pg_want(pc, 0, 0);

    switch (PQconnectPoll(pc->pgconn)) {

    case PGRES_POLLING_READING:
        if (ngx_shinsei_pg_watch(pc) != NGX_OK
            || ngx_shinsei_pg_want(pc, 1, 0) != NGX_OK)
        {
            break;
        }

        return;

    case PGRES_POLLING_WRITING:
        if (ngx_shinsei_pg_watch(pc) != NGX_OK
            || ngx_shinsei_pg_want(pc, 0, 1) != NGX_OK)
        {
            break;
        }

        return;

    case PGRES_POLLING_OK:
        if (ngx_shinsei_pg_watch(pc) != NGX_OK) {
            break;
        }

        if (pc->c->read->timer_set) {
            ngx_del_timer(pc->c->read);
        }

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "shinsei: database connection established");

        if (pc == &pool->listener) {
            if (PQsendQuery(pc->pgconn, pool->listen_sql)) {
                pc->state = NGX_SHINSEI_PG_CONN_SENDING;
                ngx_add_timer(pc->c->read, pool->conf->query_timeout);

                if (ngx_shinsei_pg_flush(pc) != NGX_OK) {
                    ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_UNAVAILABLE);
                }

                return;
            }

            ngx_shinsei_pg_log_error(pool->log, "LISTEN", pc->pgconn);
            break;
        }

        pool->stats.backoff = 0;
        pc->state = NGX_SHINSEI_PG_CONN_IDLE;
        ngx_shinsei_pg_release(pc);
        return;

    default:
        ngx_shinsei_pg_log_error(pool->log, "connection to the database",
                                 pc->pgconn);
        pool->stats.connect_failures++;
        ngx_shinsei_pg_next_host(pc);
        break;
    }

    ngx_shinsei_pg_close(pc);
    ngx_shinsei_pg_refill();
    ngx_shinsei_pg_fail_waiting();
}


static void
ngx_shinsei_pg_start(ngx_shinsei_pg_conn_t *pc, ngx_shinsei_pg_query_t *q)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pc->query = q;
    pc->result = NULL;
    pc->preparing = 0;
    pc->c->log = q->log;
    pc->c->read->log = q->log;
    pc->c->write->log = q->log;
    pc->c->idle = 0;
    q->conn = pc;

    if (ngx_shinsei_pg_send_query(pc, q) != NGX_OK
        || ngx_shinsei_pg_flush(pc) != NGX_OK)
    {
        /* nothing reached the server: a fresh connection may do */

        q->conn = NULL;
        pc->query = NULL;
        ngx_shinsei_pg_close(pc);

        if (!q->retried) {
            q->retried = 1;
            ngx_shinsei_pg_dispatch(q);

        } else {
            ngx_shinsei_pg_post_done(q, NGX_SHINSEI_PG_UNAVAILABLE);
        }

        ngx_shinsei_pg_refill();
        return;
    }

    pc->reused = 1;

    ngx_add_timer(pc->c->read, pool->conf->query_timeout);
}


/*
 * Sends the statement: prepared first if this connection has not seen it
 * yet (the execution follows once the server confirms), executed by name
 * otherwise.
 */

static ngx_int_t
ngx_shinsei_pg_send_query(ngx_shinsei_pg_conn_t *pc,
    ngx_shinsei_pg_query_t *q)
{
    int                     ok;
    u_char                  name[NGX_INT_T_LEN + 2];
    ngx_uint_t              id;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    id = q->stmt->id;

    if (id == 0 && pool->nstmts < NGX_SHINSEI_PG_MAX_STMTS - 1) {
        id = ++pool->nstmts;
        q->stmt->id = id;
    }

    if (id == 0) {
        ok = PQsendQueryParams(pc->pgconn, q->stmt->sql, q->nparams, NULL,
                               q->values, q->lengths, q->formats, 0);

    } else {
        *ngx_sprintf(name, "s%ui", id) = '\0';

        if (pc->prepared[id / 8] & (1 << (id % 8))) {
            ok = PQsendQueryPrepared(pc->pgconn, (char *) name, q->nparams,
                                     q->values, q->lengths, q->formats, 0);

        } else {
            ok = PQsendPrepare(pc->pgconn, (char *) name, q->stmt->sql,
                               q->nparams, NULL);
            pc->preparing = id;
        }
    }

    if (!ok) {
        ngx_shinsei_pg_log_error(q->log, "sending a query", pc->pgconn);
        return NGX_ERROR;
    }

    pc->state = NGX_SHINSEI_PG_CONN_SENDING;

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_pg_flush(ngx_shinsei_pg_conn_t *pc)
{
    switch (PQflush(pc->pgconn)) {

    case 0:
        pc->state = NGX_SHINSEI_PG_CONN_RECEIVING;
        return ngx_shinsei_pg_want(pc, 1, 0);

    case 1:
        /* libpq: wait for either, reading consumes input to unblock */
        return ngx_shinsei_pg_want(pc, 1, 1);

    default:
        ngx_shinsei_pg_log_error(pc->c->log, "PQflush()", pc->pgconn);
        return NGX_ERROR;
    }
}


static void
ngx_shinsei_pg_receive(ngx_shinsei_pg_conn_t *pc)
{
    PGresult    *res;
    PGnotify    *notify;
    ngx_uint_t   id;

    if (!PQconsumeInput(pc->pgconn)) {
        ngx_shinsei_pg_log_error(pc->c->log, "PQconsumeInput()", pc->pgconn);
        ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_UNAVAILABLE);
        return;
    }

    while ((notify = PQnotifies(pc->pgconn)) != NULL) {
        PQfreemem(notify);
    }

    while (!PQisBusy(pc->pgconn)) {

        res = PQgetResult(pc->pgconn);

        if (res == NULL) {

            if (pc->result
                && PQresultStatus(pc->result) == PGRES_FATAL_ERROR)
            {
                ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_FAILED);
                return;
            }

            if (pc->preparing) {
                /* the server holds the statement now, query or not */
                id = pc->preparing;
                pc->prepared[id / 8] |= (uint8_t) (1 << (id % 8));
                pc->preparing = 0;

                PQclear(pc->result);
                pc->result = NULL;

                if (pc->query == NULL) {
                    /* cancelled meanwhile: nothing more to run */
                    ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_OK);
                    return;
                }

                if (ngx_shinsei_pg_send_query(pc, pc->query) != NGX_OK
                    || ngx_shinsei_pg_flush(pc) != NGX_OK)
                {
                    ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_UNAVAILABLE);
                }

                return;
            }

            ngx_shinsei_pg_complete(pc, NGX_SHINSEI_PG_OK);
            return;
        }

        /* the first error wins; otherwise the last result is kept */

        if (pc->result
            && PQresultStatus(pc->result) == PGRES_FATAL_ERROR)
        {
            PQclear(res);

        } else {
            PQclear(pc->result);
            pc->result = res;
        }
    }
}


static void
ngx_shinsei_pg_idle_check(ngx_shinsei_pg_conn_t *pc)
{
    PGnotify  *notify;

    if (pc->c->close) {
        ngx_queue_remove(&pc->queue);
        ngx_shinsei_pg_close(pc);
        return;
    }

    if (!PQconsumeInput(pc->pgconn)
        || PQstatus(pc->pgconn) != CONNECTION_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_shinsei_pg_pool->log, 0,
                      ngx_shinsei_log_prefix "idle database connection "
                      "closed: %s", PQerrorMessage(pc->pgconn));
        ngx_queue_remove(&pc->queue);
        ngx_shinsei_pg_close(pc);
        return;
    }

    while ((notify = PQnotifies(pc->pgconn)) != NULL) {
        PQfreemem(notify);
    }
}


static void
ngx_shinsei_pg_complete(ngx_shinsei_pg_conn_t *pc,
    ngx_shinsei_pg_status_e status)
{
    PGresult                *res;
    ngx_uint_t               i;
    ngx_shinsei_pg_pool_t   *pool;
    ngx_shinsei_pg_query_t  *q;

    pool = ngx_shinsei_pg_pool;

    q = pc->query;
    res = pc->result;

    pc->query = NULL;
    pc->result = NULL;

    if (pc->c->read->timer_set) {
        ngx_del_timer(pc->c->read);
    }

    if (pc == &pool->listener) {
        PQclear(res);

        if (status != NGX_SHINSEI_PG_OK
            || ngx_shinsei_pg_want(pc, 1, 0) != NGX_OK)
        {
            ngx_shinsei_pg_close(pc);
            return;
        }

        /* listening: whatever was missed while away is looked at now */

        pc->state = NGX_SHINSEI_PG_CONN_LISTENING;
        pool->listen_backoff = 0;

        for (i = 0; i < pool->nchannels; i++) {
            pool->channels[i].notify(&pool->channels[i].channel, NULL,
                                     pool->channels[i].data);
        }

        return;
    }

    switch (status) {

    case NGX_SHINSEI_PG_OK:
        ngx_shinsei_pg_release(pc);
        break;

    case NGX_SHINSEI_PG_FAILED:
        pool->stats.failed++;
        ngx_shinsei_pg_release(pc);
        break;

    case NGX_SHINSEI_PG_TIMEDOUT:
        pool->stats.timedout++;
        ngx_shinsei_pg_close(pc);
        ngx_shinsei_pg_refill();
        break;

    default:
        pool->stats.unavailable++;
        ngx_shinsei_pg_close(pc);
        ngx_shinsei_pg_refill();
        break;
    }

    if (q != NULL) {
        q->conn = NULL;
        q->status = status;
        q->result = res;
        q->done(q);
    }

    PQclear(res);
}


static void
ngx_shinsei_pg_release(ngx_shinsei_pg_conn_t *pc)
{
    ngx_queue_t             *head;
    ngx_shinsei_pg_pool_t   *pool;
    ngx_shinsei_pg_query_t  *q;

    pool = ngx_shinsei_pg_pool;

    if (PQstatus(pc->pgconn) != CONNECTION_OK
        || PQtransactionStatus(pc->pgconn) != PQTRANS_IDLE)
    {
        /* never hand out a connection left inside a transaction */
        ngx_shinsei_pg_close(pc);
        ngx_shinsei_pg_refill();
        return;
    }

    pc->state = NGX_SHINSEI_PG_CONN_IDLE;
    pc->c->log = pool->log;
    pc->c->read->log = pool->log;
    pc->c->write->log = pool->log;

    if (!ngx_queue_empty(&pool->waiting)) {
        head = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(head, ngx_shinsei_pg_query_t, queue);

        ngx_queue_remove(head);
        q->waiting = 0;
        pool->stats.waiting--;

        if (q->event.timer_set) {
            ngx_del_timer(&q->event);
        }

        ngx_shinsei_pg_start(pc, q);
        return;
    }

    if (ngx_shinsei_pg_want(pc, 1, 0) != NGX_OK) {
        ngx_shinsei_pg_close(pc);
        ngx_shinsei_pg_refill();
        return;
    }

    pc->c->idle = 1;
    ngx_queue_insert_head(&pool->idle, &pc->queue);
}


static void
ngx_shinsei_pg_close(ngx_shinsei_pg_conn_t *pc)
{
    if (pc->c) {
        if (pc->c->read->timer_set) {
            ngx_del_timer(pc->c->read);
        }

        ngx_shinsei_pg_unwatch(pc);
    }

    if (pc->result) {
        PQclear(pc->result);
        pc->result = NULL;
    }

    if (pc->pgconn) {
        PQfinish(pc->pgconn);
        pc->pgconn = NULL;
    }

    pc->state = NGX_SHINSEI_PG_CONN_FREE;
    pc->query = NULL;

    if (pc == &ngx_shinsei_pg_pool->listener && !ngx_shinsei_pg_pool->exiting
        && !ngx_exiting && !ngx_terminate && !ngx_quit)
    {
        ngx_shinsei_pg_pool->listen_backoff =
            ngx_max(NGX_SHINSEI_PG_BACKOFF_MIN,
                    ngx_min(ngx_shinsei_pg_pool->listen_backoff * 2,
                            NGX_SHINSEI_PG_BACKOFF_MAX));

        if (!ngx_shinsei_pg_pool->listen_retry.timer_set) {
            ngx_add_timer(&ngx_shinsei_pg_pool->listen_retry,
                          ngx_shinsei_pg_pool->listen_backoff);
        }
    }
}


static void
ngx_shinsei_pg_listen_retry(ngx_event_t *ev)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    if (pool == NULL || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (pool->listener.state == NGX_SHINSEI_PG_CONN_FREE
        && ngx_shinsei_pg_open(&pool->listener) != NGX_OK)
    {
        ngx_shinsei_pg_close(&pool->listener);
    }
}


static void
ngx_shinsei_pg_listen_check(ngx_shinsei_pg_conn_t *pc)
{
    ngx_str_t                  channel, payload;
    PGnotify                  *notify;
    ngx_uint_t                 i, seen;
    ngx_shinsei_pg_pool_t     *pool;
    ngx_shinsei_pg_channel_t  *ch;

    pool = ngx_shinsei_pg_pool;

    if (pc->c->close
        || !PQconsumeInput(pc->pgconn)
        || PQstatus(pc->pgconn) != CONNECTION_OK)
    {
        if (!pc->c->close) {
            ngx_shinsei_pg_log_error(pool->log, "the LISTEN connection",
                                     pc->pgconn);
        }

        ngx_shinsei_pg_close(pc);
        return;
    }

    seen = 0;

    while ((notify = PQnotifies(pc->pgconn)) != NULL) {
        channel.data = (u_char *) notify->relname;
        channel.len = ngx_strlen(notify->relname);
        payload.data = (u_char *) notify->extra;
        payload.len = ngx_strlen(notify->extra);

        /* a burst of notifications is one call per channel */

        for (i = 0; i < pool->nchannels; i++) {
            ch = &pool->channels[i];

            if (ch->channel.len == channel.len
                && ngx_strncmp(ch->channel.data, channel.data, channel.len)
                   == 0
                && !(seen & (1 << i)))
            {
                seen |= 1 << i;
                ch->notify(&channel, &payload, ch->data);
            }
        }

        PQfreemem(notify);
    }
}


static ngx_int_t
ngx_shinsei_pg_watch(ngx_shinsei_pg_conn_t *pc)
{
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    fd = PQsocket(pc->pgconn);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, ngx_shinsei_pg_pool->log, 0,
                      ngx_shinsei_log_prefix "libpq has no socket");
        return NGX_ERROR;
    }

    if (pc->c) {
        if (pc->c->fd == fd) {
            return NGX_OK;
        }

        /* libpq closed the old socket: nothing is left to unregister */

        if (pc->c->read->timer_set) {
            ngx_del_timer(pc->c->read);
        }

        pc->c->read->active = 0;
        pc->c->write->active = 0;
        ngx_shinsei_pg_unwatch(pc);
    }

    c = ngx_get_connection(fd, ngx_shinsei_pg_pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = ngx_shinsei_pg_event_handler;
    c->write->handler = ngx_shinsei_pg_event_handler;
    c->read->log = c->log;
    c->write->log = c->log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    pc->c = c;

    if (pc->state == NGX_SHINSEI_PG_CONN_CONNECTING) {
        /* the connect timeout carries over to a socket libpq replaced */
        ngx_add_timer(c->read,
                      (ngx_msec_int_t) (pc->deadline - ngx_current_msec) > 0
                      ? pc->deadline - ngx_current_msec : 1);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_pg_want(ngx_shinsei_pg_conn_t *pc, ngx_uint_t rd, ngx_uint_t wr)
{
    ngx_connection_t  *c;

    c = pc->c;

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


static void
ngx_shinsei_pg_unwatch(ngx_shinsei_pg_conn_t *pc)
{
    ngx_connection_t  *c;

    c = pc->c;

    if (c == NULL) {
        return;
    }

    /* libpq closes the socket itself: no syscall is needed */

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
    pc->c = NULL;
}


/*
 * A host of a multi-host string failed (down, silent, or a standby when
 * target_session_attrs=read-write asks for the primary): the next
 * connection tries the next host at once; once every host has failed,
 * the pool pauses before it starts over.
 */

static void
ngx_shinsei_pg_next_host(ngx_shinsei_pg_conn_t *pc)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pool->host = (pool->host + 1) % pool->conf->hosts->nelts;

    if (pool->host == 0 && pc != &pool->listener) {
        ngx_shinsei_pg_backoff();
    }
}


static void
ngx_shinsei_pg_backoff(void)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pool->stats.backoff = ngx_max(NGX_SHINSEI_PG_BACKOFF_MIN,
                                  ngx_min(pool->stats.backoff * 2,
                                          NGX_SHINSEI_PG_BACKOFF_MAX));
    pool->retry_at = ngx_current_msec + pool->stats.backoff;
}


/*
 * A connection was discarded: the queries waiting for one get a new
 * connection if the pool may open one, or fail now if none is left to
 * serve them, instead of waiting out their queue timeout.
 */

static void
ngx_shinsei_pg_refill(void)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    if (ngx_queue_empty(&pool->waiting) || pool->exiting) {
        return;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - pool->retry_at) >= 0) {
        (void) ngx_shinsei_pg_connect();
    }

    ngx_shinsei_pg_fail_waiting();
}


static void
ngx_shinsei_pg_fail_waiting(void)
{
    ngx_uint_t               i;
    ngx_queue_t             *head;
    ngx_shinsei_pg_pool_t   *pool;
    ngx_shinsei_pg_query_t  *q;

    pool = ngx_shinsei_pg_pool;

    /* while any connection lives, the waiting queries keep their turn */

    for (i = 0; i < pool->conf->pool_size; i++) {
        if (pool->conns[i].state != NGX_SHINSEI_PG_CONN_FREE) {
            return;
        }
    }

    while (!ngx_queue_empty(&pool->waiting)) {
        head = ngx_queue_head(&pool->waiting);
        q = ngx_queue_data(head, ngx_shinsei_pg_query_t, queue);

        ngx_queue_remove(head);
        q->waiting = 0;
        pool->stats.waiting--;

        if (q->event.timer_set) {
            ngx_del_timer(&q->event);
        }

        ngx_shinsei_pg_post_done(q, NGX_SHINSEI_PG_UNAVAILABLE);
    }
}


static void
ngx_shinsei_pg_post_done(ngx_shinsei_pg_query_t *q,
    ngx_shinsei_pg_status_e status)
{
    /* done() is never called from inside ngx_shinsei_pg_send() */

    ngx_shinsei_pg_pool->stats.unavailable++;

    q->status = status;
    ngx_post_event(&q->event, &ngx_posted_events);
}


static void
ngx_shinsei_pg_wait_handler(ngx_event_t *ev)
{
    ngx_shinsei_pg_query_t  *q;

    q = ev->data;

    if (ev->timedout) {
        ev->timedout = 0;

        if (q->waiting) {
            ngx_queue_remove(&q->queue);
            q->waiting = 0;
            ngx_shinsei_pg_pool->stats.waiting--;
        }

        ngx_log_error(NGX_LOG_ERR, q->log, 0,
                      ngx_shinsei_log_prefix "no database connection "
                      "became free within the queue timeout");

        ngx_shinsei_pg_pool->stats.unavailable++;
        q->status = NGX_SHINSEI_PG_UNAVAILABLE;
    }

    q->result = NULL;
    q->done(q);
}


static void
ngx_shinsei_pg_notice(void *arg, const char *message)
{
    ngx_log_error(NGX_LOG_NOTICE, (ngx_log_t *) arg, 0,
                  ngx_shinsei_log_prefix "database says: %s", message);
}


static void
ngx_shinsei_pg_log_error(ngx_log_t *log, const char *what, PGconn *pgconn)
{
    u_char  *msg, *last;

    msg = (u_char *) PQerrorMessage(pgconn);
    last = msg + ngx_strlen(msg);

    while (last > msg && (last[-1] == '\n' || last[-1] == ' ')) {
        last--;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  ngx_shinsei_log_prefix "%s failed: %*s",
                  what, (size_t) (last - msg), msg);
}


static char *
ngx_shinsei_pg_split(ngx_conf_t *cf, const char *list, ngx_array_t *out)
{
    u_char     *p, *last, *comma;
    ngx_str_t  *item;

    p = (u_char *) list;
    last = p + ngx_strlen(list);

    for ( ;; ) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        item = ngx_array_push(out);
        if (item == NULL) {
            return NGX_CONF_ERROR;
        }

        item->data = p;
        item->len = comma - p;

        if (comma == last) {
            return NGX_CONF_OK;
        }

        p = comma + 1;
    }
}


/* keyword='value' with \ and ' escaped, as libpq reads them */

static u_char *
ngx_shinsei_pg_quote(u_char *p, const char *keyword, ngx_str_t *value)
{
    u_char  *v;

    p = ngx_sprintf(p, "%s='", keyword);

    for (v = value->data; v < value->data + value->len; v++) {
        if (*v == '\\' || *v == '\'') {
            *p++ = '\\';
        }

        *p++ = *v;
    }

    *p++ = '\'';
    *p++ = ' ';

    return p;
}
