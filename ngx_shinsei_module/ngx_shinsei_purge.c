
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Data kept no longer than needed (REQ N-PRIV-1): every
 * shinsei_purge_interval (10 minutes) one worker, whichever takes the
 * advisory lock, deletes ended sessions, failed logins older than a day,
 * tokens expired a week ago, mails sent a month ago, mails that could
 * not be sent after three months (staff have seen them by then), and
 * sign-ups whose address was not confirmed within a day.
 */


#include "ngx_shinsei_purge.h"
#include "ngx_shinsei_pg.h"


typedef struct {
    ngx_shinsei_main_conf_t   *smcf;
    ngx_event_t                timer;
    ngx_shinsei_pg_query_t     query;
    const char                *params[2];
    u_char                     buf[2 * NGX_TIME_T_LEN + 2];
    ngx_uint_t                 failures;
    unsigned                   busy:1;
} ngx_shinsei_purge_t;


static void ngx_shinsei_purge_tick(ngx_event_t *ev);
static void ngx_shinsei_purge_done(ngx_shinsei_pg_query_t *q);


static ngx_shinsei_purge_t  *ngx_shinsei_purge;
static ngx_connection_t      ngx_shinsei_purge_dummy;


/* $1 and $2: the idle and absolute lifetimes of sessions, in seconds */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_purge_stmt =
    ngx_shinsei_pg_stmt(
    "WITH lock AS (SELECT pg_try_advisory_xact_lock(7165001) AS got),"
    " s AS (DELETE FROM sessions WHERE (SELECT got FROM lock)"
    "  AND (last_seen_at < now() - make_interval(secs => $1::int)"
    "       OR created_at < now() - make_interval(secs => $2::int))"
    "  RETURNING 1),"
    " f AS (DELETE FROM login_failures WHERE (SELECT got FROM lock)"
    "  AND at < now() - interval '1 day' RETURNING 1),"
    " t AS (DELETE FROM tokens WHERE (SELECT got FROM lock)"
    "  AND expires_at < now() - interval '7 days' RETURNING 1),"
    " o AS (DELETE FROM outbox WHERE (SELECT got FROM lock)"
    "  AND ((status = 'sent' AND sent_at < now() - interval '30 days')"
    "       OR (status = 'dead' AND created_at < now() - interval '90 days'))"
    "  RETURNING 1),"
    " c AS (DELETE FROM citizens WHERE (SELECT got FROM lock)"
    "  AND verified_at IS NULL AND created_at < now() - interval '24 hours'"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM f),"
    " (SELECT count(*) FROM t), (SELECT count(*) FROM o),"
    " (SELECT count(*) FROM c)");


ngx_int_t
ngx_shinsei_purge_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf)
{
    u_char               *p;
    ngx_shinsei_purge_t  *pg;

    pg = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_purge_t));
    if (pg == NULL) {
        return NGX_ERROR;
    }

    pg->smcf = smcf;

    p = pg->buf;
    pg->params[0] = (char *) p;
    p = ngx_sprintf(p, "%T", smcf->session_idle);
    *p++ = '\0';
    pg->params[1] = (char *) p;
    p = ngx_sprintf(p, "%T", smcf->session_absolute);
    *p = '\0';

    ngx_shinsei_purge_dummy.fd = (ngx_socket_t) -1;

    pg->timer.handler = ngx_shinsei_purge_tick;
    pg->timer.data = &ngx_shinsei_purge_dummy;
    pg->timer.log = cycle->log;
    pg->timer.cancelable = 1;

    ngx_shinsei_purge = pg;

    /* the workers spread out over a tenth of the interval */
    ngx_add_timer(&pg->timer, smcf->purge_interval
                              + ngx_random() % (smcf->purge_interval / 10 + 1));

    return NGX_OK;
}


ngx_uint_t
ngx_shinsei_purge_failures(void)
{
    return ngx_shinsei_purge ? ngx_shinsei_purge->failures : 0;
}


void
ngx_shinsei_purge_exit_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_purge_t  *pg;

    pg = ngx_shinsei_purge;

    if (pg == NULL) {
        return;
    }

    if (pg->timer.timer_set) {
        ngx_del_timer(&pg->timer);
    }

    if (pg->busy) {
        ngx_shinsei_pg_cancel(&pg->query);
    }

    ngx_shinsei_purge = NULL;
}


static void
ngx_shinsei_purge_tick(ngx_event_t *ev)
{
    ngx_shinsei_purge_t  *pg;

    pg = ngx_shinsei_purge;

    if (pg == NULL || pg->busy || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_memzero(&pg->query, sizeof(ngx_shinsei_pg_query_t));
    pg->query.stmt = &ngx_shinsei_purge_stmt;
    pg->query.nparams = 2;
    pg->query.values = pg->params;
    pg->query.done = ngx_shinsei_purge_done;
    pg->query.data = pg;
    pg->query.log = ev->log;

    pg->busy = 1;

    ngx_shinsei_pg_send(&pg->query);
}


static void
ngx_shinsei_purge_done(ngx_shinsei_pg_query_t *q)
{
    ngx_shinsei_purge_t  *pg;

    pg = q->data;
    pg->busy = 0;

    if (q->status != NGX_SHINSEI_PG_OK) {
        ngx_shinsei_pg_log_failure(q, NGX_LOG_ERR, "the purge");
        pg->failures++;

    } else if (PQntuples(q->result) == 1) {
        ngx_log_error(NGX_LOG_INFO, q->log, 0,
                      ngx_shinsei_log_prefix "purged %s sessions, "
                      "%s failed logins, %s tokens, %s mails, "
                      "%s unconfirmed sign-ups",
                      PQgetvalue(q->result, 0, 0),
                      PQgetvalue(q->result, 0, 1),
                      PQgetvalue(q->result, 0, 2),
                      PQgetvalue(q->result, 0, 3),
                      PQgetvalue(q->result, 0, 4));
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(&pg->timer, pg->smcf->purge_interval);
    }
}
