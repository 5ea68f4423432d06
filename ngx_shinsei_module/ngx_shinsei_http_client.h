
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_HTTP_CLIENT_H_INCLUDED_
#define _NGX_SHINSEI_HTTP_CLIENT_H_INCLUDED_


#include "ngx_shinsei_common.h"
#include <curl/curl.h>


typedef struct ngx_shinsei_curl_s  ngx_shinsei_curl_t;

typedef void (*ngx_shinsei_curl_done_pt)(ngx_shinsei_curl_t *req,
    CURLcode rc);


/*
 * One transfer: the caller sets up the easy handle (URL, timeouts are
 * already set to the given values), starts it, and gets done() once, on
 * the event loop, when it ends.  The easy handle is the caller's to free.
 */
struct ngx_shinsei_curl_s {
    CURL                      *easy;
    ngx_shinsei_curl_done_pt   done;
    void                      *data;
    ngx_log_t                 *log;
    char                       error[CURL_ERROR_SIZE];
    ngx_queue_t                queue;
    unsigned                   running:1;
};


ngx_int_t ngx_shinsei_http_client_init_process(ngx_cycle_t *cycle);
void ngx_shinsei_http_client_exit_process(ngx_cycle_t *cycle);

ngx_int_t ngx_shinsei_curl_init(ngx_shinsei_curl_t *req,
    ngx_msec_t timeout);
ngx_int_t ngx_shinsei_curl_start(ngx_shinsei_curl_t *req);
void ngx_shinsei_curl_cancel(ngx_shinsei_curl_t *req);
ngx_uint_t ngx_shinsei_curl_running(void);


#endif /* _NGX_SHINSEI_HTTP_CLIENT_H_INCLUDED_ */
