
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_PG_H_INCLUDED_
#define _NGX_SHINSEI_PG_H_INCLUDED_


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_watch.h"
#include <libpq-fe.h>


typedef struct ngx_shinsei_pg_query_s  ngx_shinsei_pg_query_t;


/*
 * A statement is prepared once on each connection, on first use there,
 * and then only executed: the server parses and plans it once.
 */
struct ngx_shinsei_pg_stmt_s {
    const char                *sql;
    ngx_uint_t                 id;        /* given per worker on first use */
};

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
    unsigned                   internal:1;   /* a cancel: never cancelled */
};


typedef struct {
    ngx_uint_t                 size;
    ngx_uint_t                 open;
    ngx_uint_t                 idle;
    ngx_uint_t                 busy;
    ngx_uint_t                 connecting;
    ngx_uint_t                 cancelling;
    ngx_uint_t                 waiting;
    ngx_uint_t                 queries;
    ngx_uint_t                 failed;
    ngx_uint_t                 unavailable;
    ngx_uint_t                 timedout;
    ngx_uint_t                 cancels;
    ngx_uint_t                 connects;
    ngx_uint_t                 connect_failures;
    ngx_msec_t                 backoff;
} ngx_shinsei_pg_stats_t;


typedef void (*ngx_shinsei_pg_notify_pt)(ngx_str_t *channel,
    ngx_str_t *payload, void *data);


/* ngx_shinsei_pg_conf.c */
char *ngx_shinsei_pg_conf_db(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_shinsei_pg.c */
ngx_int_t ngx_shinsei_pg_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_db_conf_t *conf);
void ngx_shinsei_pg_exit_process(ngx_cycle_t *cycle);
void ngx_shinsei_pg_send(ngx_shinsei_pg_query_t *q);
void ngx_shinsei_pg_cancel(ngx_shinsei_pg_query_t *q);
void ngx_shinsei_pg_get_stats(ngx_shinsei_pg_stats_t *st);
void ngx_shinsei_pg_log_failure(ngx_shinsei_pg_query_t *q,
    ngx_uint_t level, const char *what);

/* for the LISTEN connection of ngx_shinsei_pg_listen.c */
ngx_shinsei_db_conf_t *ngx_shinsei_pg_conf(void);
PGconn *ngx_shinsei_pg_connect_start(ngx_log_t *log);
ngx_int_t ngx_shinsei_pg_connect_poll(PGconn *pgconn,
    ngx_shinsei_watch_t *w);
void ngx_shinsei_pg_host_failed(ngx_uint_t backoff);
void ngx_shinsei_pg_log_error(ngx_log_t *log, const char *what,
    PGconn *pgconn);

/* ngx_shinsei_pg_listen.c */
ngx_int_t ngx_shinsei_pg_listen(ngx_cycle_t *cycle, const char *channel,
    ngx_shinsei_pg_notify_pt notify, void *data);
ngx_uint_t ngx_shinsei_pg_listening(void);
void ngx_shinsei_pg_listen_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_SHINSEI_PG_H_INCLUDED_ */
