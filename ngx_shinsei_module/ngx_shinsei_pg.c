
/*
 * Copyright (C) ngx_shinsei developers
 *
 * A per-worker pool of PostgreSQL connections driven by nginx events.
 *
 * Each connection is one state machine: connecting -> idle -> sending ->
 * receiving -> idle.  libpq owns the socket; nginx watches it
 * (ngx_shinsei_watch.c).  A connection that broke or failed to connect is
 * discarded; new connections are opened on demand, after a growing pause
 * once the server was found down.
 *
 * Timeouts hold on the server: every connection runs with
 * statement_timeout, lock_timeout and idle_in_transaction_session_timeout
 * set to the query timeout (ngx_shinsei_pg_conf.c), so the server itself
 * rolls back a statement over its time and says so; the pool's own timer,
 * a second later, only catches a server that does not answer at all.
 *
 * A query whose owner gives up (that timer, or a client that went away)
 * is cancelled on the server with pg_cancel_backend() on another
 * connection (libpq 15 has no nonblocking PQcancel): an idle one of the
 * pool, or a spare one beyond the pool's size that only cancels, so that
 * a full pool can still stop what holds it.  Until both the cancelled
 * statement and the cancel have ended, its connection takes no other
 * query, so a late cancel can never hit the next one.
 */


#include "ngx_shinsei_pg.h"


#define NGX_SHINSEI_PG_BACKOFF_MIN   100
#define NGX_SHINSEI_PG_BACKOFF_MAX   3000
#define NGX_SHINSEI_PG_MAX_STMTS     512
/* after the server's statement_timeout: its answer comes first */
#define NGX_SHINSEI_PG_GRACE         1000


typedef enum {
    NGX_SHINSEI_PG_CONN_FREE = 0,
    NGX_SHINSEI_PG_CONN_CONNECTING,
    NGX_SHINSEI_PG_CONN_IDLE,
    NGX_SHINSEI_PG_CONN_SENDING,
    NGX_SHINSEI_PG_CONN_RECEIVING,
    NGX_SHINSEI_PG_CONN_CANCELLING    /* ended; its cancel still runs */
} ngx_shinsei_pg_conn_state_e;


typedef struct {
    PGconn                        *pgconn;
    ngx_shinsei_watch_t            watch;
    ngx_shinsei_pg_conn_state_e    state;
    ngx_shinsei_pg_query_t        *query;
    PGresult                      *result;
    ngx_queue_t                    queue;
    uint8_t                        prepared[NGX_SHINSEI_PG_MAX_STMTS / 8];
    ngx_uint_t                     preparing;    /* statement id, or 0 */
    ngx_msec_t                     deadline;     /* of the connect */

    /* SELECT pg_cancel_backend(pid) for the query its owner gave up */
    ngx_shinsei_pg_query_t         canceller;
    const char                    *cancel_values[1];
    u_char                         pid[NGX_INT_T_LEN + 1];

    unsigned                       abandoned:1;  /* nobody waits for it */
    unsigned                       cancel_sent:1;
} ngx_shinsei_pg_conn_t;


typedef struct {
    ngx_shinsei_db_conf_t         *conf;
    ngx_log_t                     *log;
    ngx_shinsei_pg_conn_t         *conns;
    ngx_shinsei_pg_conn_t         *spare;        /* for cancels only */
    ngx_queue_t                    idle;
    ngx_queue_t                    waiting;
    ngx_msec_t                     retry_at;
    ngx_uint_t                     host;         /* of conf->hosts */
    ngx_uint_t                     nstmts;
    ngx_shinsei_pg_stats_t         stats;
    unsigned                       exiting:1;
} ngx_shinsei_pg_pool_t;


static void ngx_shinsei_pg_dispatch(ngx_shinsei_pg_query_t *q);
static ngx_int_t ngx_shinsei_pg_connect(void);
static ngx_int_t ngx_shinsei_pg_open(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_event_handler(ngx_event_t *ev);
static void ngx_shinsei_pg_timedout(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_connecting(ngx_shinsei_pg_conn_t *pc);
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
static void ngx_shinsei_pg_abandon(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_cancelled(ngx_shinsei_pg_query_t *q);
static void ngx_shinsei_pg_release(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_release_spare(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_close(ngx_shinsei_pg_conn_t *pc);
static void ngx_shinsei_pg_backoff(void);
static void ngx_shinsei_pg_fail_waiting(void);
static void ngx_shinsei_pg_post_done(ngx_shinsei_pg_query_t *q,
    ngx_shinsei_pg_status_e status);
static void ngx_shinsei_pg_unqueue(ngx_shinsei_pg_query_t *q);
static void ngx_shinsei_pg_wait_handler(ngx_event_t *ev);
static void ngx_shinsei_pg_notice(void *arg, const PGresult *res);


static ngx_shinsei_pg_pool_t  *ngx_shinsei_pg_pool;

static ngx_shinsei_pg_stmt_t  ngx_shinsei_pg_cancel_stmt =
    ngx_shinsei_pg_stmt("SELECT pg_cancel_backend($1::int)");


ngx_int_t
ngx_shinsei_pg_init_process(ngx_cycle_t *cycle, ngx_shinsei_db_conf_t *conf)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_pg_pool_t));
    if (pool == NULL) {
        return NGX_ERROR;
    }

    pool->conns = ngx_pcalloc(cycle->pool, (conf->pool_size + 1)
                                           * sizeof(ngx_shinsei_pg_conn_t));
    if (pool->conns == NULL) {
        return NGX_ERROR;
    }

    pool->spare = &pool->conns[conf->pool_size];

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

    for (i = 0; i <= pool->conf->pool_size; i++) {
        if (pool->conns[i].state != NGX_SHINSEI_PG_CONN_FREE) {
            ngx_shinsei_pg_close(&pool->conns[i]);
        }
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


/*
 * The owner gives up (its request ended): done() is not called.  A query
 * still running on the server is cancelled there.
 */

void
ngx_shinsei_pg_cancel(ngx_shinsei_pg_query_t *q)
{
    ngx_shinsei_pg_conn_t  *pc;

    ngx_shinsei_pg_unqueue(q);

    if (q->event.posted) {
        ngx_delete_posted_event(&q->event);
    }

    pc = q->conn;

    if (pc == NULL) {
        return;
    }

    q->conn = NULL;
    pc->query = NULL;

    if (q->internal) {
        /* a cancel is not cancelled: its answer is read and dropped */
        pc->abandoned = 1;
        ngx_shinsei_watch_log(&pc->watch, ngx_shinsei_pg_pool->log);
        return;
    }

    ngx_shinsei_pg_abandon(pc);
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
    st->cancelling = 0;

    for (i = 0; i <= pool->conf->pool_size; i++) {

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

        if (pool->conns[i].abandoned
            || pool->conns[i].state == NGX_SHINSEI_PG_CONN_CANCELLING)
        {
            st->cancelling++;
        }

        st->open++;
    }
}


/*
 * What failed, for the log of a background job: SQLSTATE and the primary
 * message, never the parameters or the detail (they may quote personal
 * data).
 */

void
ngx_shinsei_pg_log_failure(ngx_shinsei_pg_query_t *q, ngx_uint_t level,
    const char *what)
{
    char  *state, *msg;

    switch (q->status) {

    case NGX_SHINSEI_PG_FAILED:
        state = PQresultErrorField(q->result, PG_DIAG_SQLSTATE);
        msg = PQresultErrorField(q->result, PG_DIAG_MESSAGE_PRIMARY);

        ngx_log_error(level, q->log, 0,
                      ngx_shinsei_log_prefix "%s failed: %s (SQLSTATE %s)",
                      what, msg ? msg : "?", state ? state : "?");
        break;

    case NGX_SHINSEI_PG_TIMEDOUT:
        ngx_log_error(level, q->log, 0,
                      ngx_shinsei_log_prefix "%s failed: over the query "
                      "timeout", what);
        break;

    case NGX_SHINSEI_PG_UNAVAILABLE:
        ngx_log_error(level, q->log, 0,
                      ngx_shinsei_log_prefix "%s failed: the database is "
                      "unavailable", what);
        break;

    default:
        break;
    }
}


ngx_shinsei_db_conf_t *
ngx_shinsei_pg_conf(void)
{
    return ngx_shinsei_pg_pool->conf;
}


/* a connection to the current host of the list, under way */

PGconn *
ngx_shinsei_pg_connect_start(ngx_log_t *log)
{
    PGconn                 *pgconn;
    ngx_str_t              *host;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pool->stats.connects++;

    host = pool->conf->hosts->elts;
    pgconn = PQconnectStart((char *) host[pool->host].data);

    if (pgconn == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      ngx_shinsei_log_prefix "PQconnectStart() failed: "
                      "out of memory");
        pool->stats.connect_failures++;
        return NULL;
    }

    if (PQstatus(pgconn) == CONNECTION_BAD) {
        ngx_shinsei_pg_log_error(log, "connection to the database", pgconn);
        goto failed;
    }

    if (PQsetnonblocking(pgconn, 1) == -1) {
        ngx_shinsei_pg_log_error(log, "PQsetnonblocking()", pgconn);
        goto failed;
    }

    PQsetNoticeReceiver(pgconn, ngx_shinsei_pg_notice, pool->log);

    return pgconn;

failed:

    PQfinish(pgconn);
    pool->stats.connect_failures++;

    return NULL;
}


/*
 * One step of a connect: NGX_AGAIN while libpq waits for its socket (now
 * watched as it asked), NGX_OK once connected, NGX_ERROR when it failed.
 */

ngx_int_t
ngx_shinsei_pg_connect_poll(PGconn *pgconn, ngx_shinsei_watch_t *w)
{
    /*
     * libpq may close the socket and open another one inside
     * PQconnectPoll() (the next host of a multi-host string, an SSL
     * fallback), so the old socket is unregistered while it is open.
     */

    if (w->c) {
        (void) ngx_shinsei_watch_want(w, 0, 0);
    }

    switch (PQconnectPoll(pgconn)) {

    case PGRES_POLLING_READING:
        if (ngx_shinsei_watch_fd(w, PQsocket(pgconn)) != NGX_OK
            || ngx_shinsei_watch_want(w, 1, 0) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_AGAIN;

    case PGRES_POLLING_WRITING:
        if (ngx_shinsei_watch_fd(w, PQsocket(pgconn)) != NGX_OK
            || ngx_shinsei_watch_want(w, 0, 1) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_AGAIN;

    case PGRES_POLLING_OK:
        if (ngx_shinsei_watch_fd(w, PQsocket(pgconn)) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_OK;

    default:
        ngx_shinsei_pg_log_error(w->log, "connection to the database",
                                 pgconn);
        ngx_shinsei_pg_pool->stats.connect_failures++;
        return NGX_ERROR;
    }
}


/*
 * A host of a multi-host string failed (down, silent, or a standby when
 * target_session_attrs=read-write asks for the primary): the next
 * connection tries the next host at once; once every host has failed,
 * the pool pauses before it starts over (if backoff).
 */

void
ngx_shinsei_pg_host_failed(ngx_uint_t backoff)
{
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pool->host = (pool->host + 1) % pool->conf->hosts->nelts;

    if (pool->host == 0 && backoff) {
        ngx_shinsei_pg_backoff();
    }
}


void
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

    } else if (q->internal && pool->spare->state == NGX_SHINSEI_PG_CONN_FREE
               && ngx_shinsei_pg_open(pool->spare) == NGX_OK)
    {
        /* the pool is full: a cancel gets a connection of its own */
        open++;
    }

    if (open == 0
        || (pool->stats.waiting >= pool->conf->queue_size && !q->internal))
    {
        ngx_shinsei_pg_post_done(q, NGX_SHINSEI_PG_UNAVAILABLE);
        return;
    }

    /*
     * a connection being opened or returned takes the first in line;
     * a cancel goes first: the statement it stops holds a connection
     */

    if (q->internal) {
        ngx_queue_insert_head(&pool->waiting, &q->queue);

    } else {
        ngx_queue_insert_tail(&pool->waiting, &q->queue);
    }

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
                ngx_shinsei_pg_host_failed(1);
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
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pc->pgconn = ngx_shinsei_pg_connect_start(pool->log);
    if (pc->pgconn == NULL) {
        return NGX_ERROR;
    }

    pc->deadline = ngx_current_msec + pool->conf->connect_timeout;
    pc->state = NGX_SHINSEI_PG_CONN_CONNECTING;
    pc->preparing = 0;
    pc->abandoned = 0;
    pc->cancel_sent = 0;
    ngx_memzero(pc->prepared, sizeof(pc->prepared));

    pc->watch.handler = ngx_shinsei_pg_event_handler;
    pc->watch.data = pc;
    pc->watch.log = pool->log;

    /* libpq: before the first PQconnectPoll(), wait as if for writing */

    if (ngx_shinsei_watch_fd(&pc->watch, PQsocket(pc->pgconn)) != NGX_OK
        || ngx_shinsei_watch_want(&pc->watch, 0, 1) != NGX_OK)
    {
        pool->stats.connect_failures++;
        ngx_shinsei_pg_close(pc);
        return NGX_ERROR;
    }

    ngx_add_timer(pc->watch.c->read, pool->conf->connect_timeout);

    return NGX_OK;
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
        ngx_shinsei_pg_timedout(pc);
        return;
    }

    switch (pc->state) {

    case NGX_SHINSEI_PG_CONN_CONNECTING:
        ngx_shinsei_pg_connecting(pc);
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
    case NGX_SHINSEI_PG_CONN_CANCELLING:
        ngx_shinsei_pg_idle_check(pc);
        break;

    default:
        break;
    }
}


static void
ngx_shinsei_pg_timedout(ngx_shinsei_pg_conn_t *pc)
{
    ngx_shinsei_pg_pool_t   *pool;
    ngx_shinsei_pg_query_t  *q;

    pool = ngx_shinsei_pg_pool;

    if (pc->state == NGX_SHINSEI_PG_CONN_CONNECTING) {
        ngx_log_error(NGX_LOG_ERR, pool->log, NGX_ETIMEDOUT,
                      ngx_shinsei_log_prefix
                      "connection to the database timed out");
        pool->stats.connect_failures++;

        ngx_shinsei_pg_host_failed(1);
        ngx_shinsei_pg_close(pc);
        ngx_shinsei_pg_refill();
        ngx_shinsei_pg_fail_waiting();
        return;
    }

    if (pc->abandoned || pc->query == NULL) {
        /* cancelled and still silent: the server does not answer */
        ngx_log_error(NGX_LOG_ERR, pool->log, NGX_ETIMEDOUT,
                      ngx_shinsei_log_prefix "a cancelled query did not "
                      "end in time, its connection is closed");
        ngx_shinsei_pg_close(pc);
        ngx_shinsei_pg_refill();
        return;
    }

    /* the server's own statement_timeout did not answer: it is silent */

    q = pc->query;

    ngx_log_error(NGX_LOG_ERR, q->log, NGX_ETIMEDOUT,
                  ngx_shinsei_log_prefix "query timed out without an "
                  "answer from the server; cancelling it there");

    pool->stats.timedout++;

    pc->query = NULL;
    ngx_shinsei_pg_abandon(pc);

    if (pc->state != NGX_SHINSEI_PG_CONN_FREE) {
        ngx_add_timer(pc->watch.c->read, pool->conf->connect_timeout);
    }

    q->conn = NULL;
    q->status = NGX_SHINSEI_PG_TIMEDOUT;
    q->result = NULL;
    q->done(q);
}


static void
ngx_shinsei_pg_connecting(ngx_shinsei_pg_conn_t *pc)
{
    ngx_int_t               rc;
    ngx_msec_int_t          left;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    rc = ngx_shinsei_pg_connect_poll(pc->pgconn, &pc->watch);

    if (rc == NGX_AGAIN) {
        /* the connect timeout carries over to a socket libpq replaced */

        if (!pc->watch.c->read->timer_set) {
            left = (ngx_msec_int_t) (pc->deadline - ngx_current_msec);
            ngx_add_timer(pc->watch.c->read, left > 0 ? left : 1);
        }

        return;
    }

    if (rc == NGX_OK) {
        if (pc->watch.c->read->timer_set) {
            ngx_del_timer(pc->watch.c->read);
        }

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "shinsei: database connection established");

        pool->stats.backoff = 0;
        pc->state = NGX_SHINSEI_PG_CONN_IDLE;
        ngx_shinsei_pg_release(pc);
        return;
    }

    ngx_shinsei_pg_host_failed(1);
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
    pc->watch.c->idle = 0;
    ngx_shinsei_watch_log(&pc->watch, q->log);
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

    ngx_add_timer(pc->watch.c->read,
                  pool->conf->query_timeout + NGX_SHINSEI_PG_GRACE);
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
        return ngx_shinsei_watch_want(&pc->watch, 1, 0);

    case 1:
        /* libpq: wait for either, reading consumes input to unblock */
        return ngx_shinsei_watch_want(&pc->watch, 1, 1);

    default:
        ngx_shinsei_pg_log_error(pc->watch.c->log, "PQflush()", pc->pgconn);
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
        ngx_shinsei_pg_log_error(pc->watch.c->log, "PQconsumeInput()",
                                 pc->pgconn);
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
                    /* given up meanwhile: nothing ran, nothing to cancel */
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

    if (pc->watch.c->close) {
        if (pc->state == NGX_SHINSEI_PG_CONN_IDLE) {
            ngx_queue_remove(&pc->queue);
        }

        ngx_shinsei_pg_close(pc);
        return;
    }

    if (!PQconsumeInput(pc->pgconn)
        || PQstatus(pc->pgconn) != CONNECTION_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_shinsei_pg_pool->log, 0,
                      ngx_shinsei_log_prefix "idle database connection "
                      "closed: %s", PQerrorMessage(pc->pgconn));

        if (pc->state == NGX_SHINSEI_PG_CONN_IDLE) {
            ngx_queue_remove(&pc->queue);
        }

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
    char                    *state;
    PGresult                *res;
    ngx_shinsei_pg_pool_t   *pool;
    ngx_shinsei_pg_query_t  *q;

    pool = ngx_shinsei_pg_pool;

    q = pc->query;
    res = pc->result;

    pc->query = NULL;
    pc->result = NULL;

    if (pc->watch.c->read->timer_set) {
        ngx_del_timer(pc->watch.c->read);
    }

    if (status == NGX_SHINSEI_PG_FAILED) {
        /* the server's own timeouts: statement_timeout, lock_timeout */

        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (state
            && (ngx_strcmp(state, "57014") == 0
                || ngx_strcmp(state, "55P03") == 0))
        {
            status = NGX_SHINSEI_PG_TIMEDOUT;
        }
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
        if (q) {
            pool->stats.timedout++;
            ngx_log_error(NGX_LOG_ERR, q->log, 0,
                          ngx_shinsei_log_prefix "query timed out; the "
                          "server rolled it back");
        }

        ngx_shinsei_pg_release(pc);
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


/*
 * Nobody waits for the query on pc any more.  A statement that the
 * server may be running is cancelled there, with a query of its own on
 * another connection; pc's answer is read and thrown away.
 */

static void
ngx_shinsei_pg_abandon(ngx_shinsei_pg_conn_t *pc)
{
    int                     pid;
    ngx_shinsei_pg_pool_t  *pool;

    pool = ngx_shinsei_pg_pool;

    pc->abandoned = 1;
    ngx_shinsei_watch_log(&pc->watch, pool->log);

    /* even a statement being prepared may wait, for a lock */

    if (pc->cancel_sent) {
        return;
    }

    pid = PQbackendPID(pc->pgconn);

    if (pid <= 0 || pool->exiting) {
        return;
    }

    *ngx_sprintf(pc->pid, "%d", pid) = '\0';

    ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                  ngx_shinsei_log_prefix "cancelling the query of "
                  "database backend %d", pid);

    ngx_memzero(&pc->canceller, sizeof(ngx_shinsei_pg_query_t));
    pc->cancel_values[0] = (char *) pc->pid;
    pc->canceller.stmt = &ngx_shinsei_pg_cancel_stmt;
    pc->canceller.nparams = 1;
    pc->canceller.values = pc->cancel_values;
    pc->canceller.done = ngx_shinsei_pg_cancelled;
    pc->canceller.data = pc;
    pc->canceller.log = pool->log;
    pc->canceller.internal = 1;

    pc->cancel_sent = 1;
    pool->stats.cancels++;

    ngx_shinsei_pg_send(&pc->canceller);
}


static void
ngx_shinsei_pg_cancelled(ngx_shinsei_pg_query_t *q)
{
    ngx_shinsei_pg_conn_t  *pc;

    pc = q->data;
    pc->cancel_sent = 0;

    if (q->status != NGX_SHINSEI_PG_OK) {
        ngx_shinsei_pg_log_failure(q, NGX_LOG_WARN, "cancelling a query");
    }

    if (pc->state == NGX_SHINSEI_PG_CONN_CANCELLING) {
        /* the statement ended before its cancel did: free for others */
        ngx_shinsei_pg_release(pc);
    }
}


static void
ngx_shinsei_pg_release(ngx_shinsei_pg_conn_t *pc)
{
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

    pc->abandoned = 0;

    if (pc->cancel_sent) {

        if (pc->canceller.waiting) {
            /* the statement ended first: its cancel is moot */
            ngx_shinsei_pg_cancel(&pc->canceller);
            pc->cancel_sent = 0;

        } else {
            /* the cancel runs: a late one must not hit the next query */
            pc->state = NGX_SHINSEI_PG_CONN_CANCELLING;
            (void) ngx_shinsei_watch_want(&pc->watch, 1, 0);
            return;
        }
    }

    pc->state = NGX_SHINSEI_PG_CONN_IDLE;
    ngx_shinsei_watch_log(&pc->watch, pool->log);

    if (pc == pool->spare) {
        ngx_shinsei_pg_release_spare(pc);
        return;
    }

    if (!ngx_queue_empty(&pool->waiting)) {
        q = ngx_queue_data(ngx_queue_head(&pool->waiting),
                           ngx_shinsei_pg_query_t, queue);

        ngx_shinsei_pg_unqueue(q);
        ngx_shinsei_pg_start(pc, q);
        return;
    }

    if (ngx_shinsei_watch_want(&pc->watch, 1, 0) != NGX_OK) {
        ngx_shinsei_pg_close(pc);
        ngx_shinsei_pg_refill();
        return;
    }

    pc->watch.c->idle = 1;
    ngx_queue_insert_head(&pool->idle, &pc->queue);
}


/* the spare connection runs the cancels waiting, then closes */

static void
ngx_shinsei_pg_release_spare(ngx_shinsei_pg_conn_t *pc)
{
    ngx_queue_t             *qq;
    ngx_shinsei_pg_pool_t   *pool;
    ngx_shinsei_pg_query_t  *q;

    pool = ngx_shinsei_pg_pool;

    for (qq = ngx_queue_head(&pool->waiting);
         qq != ngx_queue_sentinel(&pool->waiting);
         qq = ngx_queue_next(qq))
    {
        q = ngx_queue_data(qq, ngx_shinsei_pg_query_t, queue);

        if (!q->internal) {
            continue;
        }

        ngx_shinsei_pg_unqueue(q);
        ngx_shinsei_pg_start(pc, q);
        return;
    }

    ngx_shinsei_pg_close(pc);
}


static void
ngx_shinsei_pg_close(ngx_shinsei_pg_conn_t *pc)
{
    if (pc->cancel_sent) {
        /* its statement goes with the connection, or is running alone */
        ngx_shinsei_pg_cancel(&pc->canceller);
        pc->cancel_sent = 0;
    }

    ngx_shinsei_watch_release(&pc->watch);

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
    pc->abandoned = 0;
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
        q = ngx_queue_data(ngx_queue_head(&pool->waiting),
                           ngx_shinsei_pg_query_t, queue);

        ngx_shinsei_pg_unqueue(q);
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


/* a query leaves the pool's queue: for a connection, or for good */

static void
ngx_shinsei_pg_unqueue(ngx_shinsei_pg_query_t *q)
{
    if (q->waiting) {
        ngx_queue_remove(&q->queue);
        q->waiting = 0;
        ngx_shinsei_pg_pool->stats.waiting--;
    }

    if (q->event.timer_set) {
        ngx_del_timer(&q->event);
    }
}


static void
ngx_shinsei_pg_wait_handler(ngx_event_t *ev)
{
    ngx_shinsei_pg_query_t  *q;

    q = ev->data;

    if (ev->timedout) {
        ev->timedout = 0;

        ngx_shinsei_pg_unqueue(q);

        ngx_log_error(NGX_LOG_ERR, q->log, 0,
                      ngx_shinsei_log_prefix "no database connection "
                      "became free within the queue timeout");

        ngx_shinsei_pg_pool->stats.unavailable++;
        q->status = NGX_SHINSEI_PG_UNAVAILABLE;
    }

    q->result = NULL;
    q->done(q);
}


/* a NOTICE or WARNING of the server, at the log's level of the same name */

static void
ngx_shinsei_pg_notice(void *arg, const PGresult *res)
{
    char        *severity, *msg;
    ngx_uint_t   level;

    severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    level = (severity && ngx_strcmp(severity, "WARNING") == 0)
            ? NGX_LOG_WARN : NGX_LOG_NOTICE;

    ngx_log_error(level, (ngx_log_t *) arg, 0,
                  ngx_shinsei_log_prefix "database says: %s: %s",
                  severity ? severity : "NOTICE", msg ? msg : "");
}
