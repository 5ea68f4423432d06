
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_PG_H_INCLUDED_
#define _NGX_SHINSEI_PG_H_INCLUDED_


#include "ngx_shinsei_common.h"
#include <libpq-fe.h>


typedef struct ngx_shinsei_pg_query_s  ngx_shinsei_pg_query_t;


/*
 * A statement is prepared once on each connection, on first use there,
 * and then only executed: the server parses and plans it once.
 */
typedef struct {
    const char                *sql;
    ngx_uint_t                 id;        /* given per worker on first use */
} ngx_shinsei_pg_stmt_t;

#define ngx_shinsei_pg_stmt(text)  { text, 0 }

typedef void (*ngx_shinsei_pg_done_pt)(ngx_shinsei_pg_query_t *q);


typedef enum {
    NGX_SHINSEI_PG_OK = 0,
    NGX_SHINSEI_PG_FAILED,          /* the server answered with an error */
    NGX_SHINSEI_PG_UNAVAILABLE,     /* no usable connection */
    NGX_SHINSEI_PG_TIMEDOUT         /* over the query timeout */
} ngx_shinsei_pg_status_e;


struct ngx_shinsei_pg_query_s {
    ngx_shinsei_pg_stmt_t     *stmt;
    int                        nparams;
    const char               **values;
    int                       *lengths;
    int                       *formats;

    ngx_shinsei_pg_done_pt     done;
    void                      *data;
    ngx_log_t                 *log;

    /* valid in done() only; freed by the pool after done() returns */
    PGresult                  *result;
    ngx_shinsei_pg_status_e    status;

    /* private to ngx_shinsei_pg.c */
    ngx_queue_t                queue;
    ngx_event_t                event;
    void                      *conn;
    unsigned                   waiting:1;
    unsigned                   retried:1;
};


typedef struct {
    ngx_uint_t                 size;
    ngx_uint_t                 open;
    ngx_uint_t                 idle;
    ngx_uint_t                 busy;
    ngx_uint_t                 connecting;
    ngx_uint_t                 waiting;
    ngx_uint_t                 queries;
    ngx_uint_t                 failed;
    ngx_uint_t                 unavailable;
    ngx_uint_t                 timedout;
    ngx_uint_t                 connects;
    ngx_uint_t                 connect_failures;
    ngx_msec_t                 backoff;
} ngx_shinsei_pg_stats_t;


typedef void (*ngx_shinsei_pg_notify_pt)(ngx_str_t *channel,
    ngx_str_t *payload, void *data);


char *ngx_shinsei_pg_parse_hosts(ngx_conf_t *cf,
    ngx_shinsei_db_conf_t *db, PQconninfoOption *opts);
ngx_int_t ngx_shinsei_pg_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_db_conf_t *conf);
void ngx_shinsei_pg_exit_process(ngx_cycle_t *cycle);

ngx_int_t ngx_shinsei_pg_listen(ngx_cycle_t *cycle, const char *channel,
    ngx_shinsei_pg_notify_pt notify, void *data);
ngx_uint_t ngx_shinsei_pg_listening(void);

void ngx_shinsei_pg_send(ngx_shinsei_pg_query_t *q);
void ngx_shinsei_pg_cancel(ngx_shinsei_pg_query_t *q);
void ngx_shinsei_pg_get_stats(ngx_shinsei_pg_stats_t *st);


#endif /* _NGX_SHINSEI_PG_H_INCLUDED_ */
