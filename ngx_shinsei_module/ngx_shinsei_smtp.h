
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_SMTP_H_INCLUDED_
#define _NGX_SHINSEI_SMTP_H_INCLUDED_


#include "ngx_shinsei_common.h"


typedef struct ngx_shinsei_smtp_s  ngx_shinsei_smtp_t;

typedef void (*ngx_shinsei_smtp_done_pt)(ngx_shinsei_smtp_t *s,
    ngx_int_t rc);


/*
 * One message to one recipient.  message is the whole RFC 5322 text with
 * CRLF line ends; done() is called once, on the event loop, with NGX_OK
 * when the server accepted it, or NGX_ERROR and the reason in error.
 */
struct ngx_shinsei_smtp_s {
    ngx_str_t                  from;
    ngx_str_t                  to;
    ngx_str_t                  message;
    ngx_shinsei_smtp_done_pt   done;
    void                      *data;
    ngx_log_t                 *log;
    u_char                     error[256];
    ngx_uint_t                 permanent;    /* 5xx to RCPT or the data */

    /* private to ngx_shinsei_smtp.c */
    ngx_peer_connection_t      peer;
    ngx_event_t                deadline;
    ngx_pool_t                *pool;
    ngx_shinsei_smtp_conf_t   *conf;
    ngx_uint_t                 state;
    ngx_buf_t                 *in;
    ngx_str_t                  out;
    u_char                    *sent;
    unsigned                   tls:1;
    unsigned                   starttls:1;
    unsigned                   auth:1;
    unsigned                   running:1;
    unsigned                   secret:1;     /* out holds credentials */
};


char *ngx_shinsei_smtp_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_shinsei_smtp_send(ngx_shinsei_smtp_t *s, ngx_pool_t *pool,
    ngx_shinsei_smtp_conf_t *conf);
void ngx_shinsei_smtp_cancel(ngx_shinsei_smtp_t *s);


#endif /* _NGX_SHINSEI_SMTP_H_INCLUDED_ */
