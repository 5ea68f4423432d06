
/*
 * Copyright (C) ngx_shinsei developers
 *
 * One libcurl multi handle per worker, driven by nginx events: libcurl
 * says which sockets it wants watched (CURLMOPT_SOCKETFUNCTION) and when
 * it wants to be called back (CURLMOPT_TIMERFUNCTION); nginx watches with
 * level-triggered events and calls curl_multi_socket_action().  Every
 * outbound call of the module (SMTP now; payments, signing, OIDC later)
 * goes through here, so nothing waits on the network inside a worker.
 */


#include "ngx_shinsei_http_client.h"


typedef struct {
    CURLM                     *multi;
    ngx_event_t                timer;
    ngx_log_t                 *log;
    ngx_queue_t                running;
    ngx_uint_t                 nrunning;
} ngx_shinsei_curl_multi_t;


static int ngx_shinsei_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_shinsei_curl_timer(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_shinsei_curl_event(ngx_event_t *ev);
static void ngx_shinsei_curl_timeout(ngx_event_t *ev);
static void ngx_shinsei_curl_check(void);
static void ngx_shinsei_curl_release(ngx_connection_t *c);


static ngx_shinsei_curl_multi_t  *ngx_shinsei_curl_multi;
static ngx_connection_t           ngx_shinsei_curl_dummy;


ngx_int_t
ngx_shinsei_http_client_init_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_curl_multi_t  *m;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      ngx_shinsei_log_prefix "curl_global_init() failed");
        return NGX_ERROR;
    }

    m = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_curl_multi_t));
    if (m == NULL) {
        return NGX_ERROR;
    }

    m->multi = curl_multi_init();
    if (m->multi == NULL) {
        return NGX_ERROR;
    }

    m->log = cycle->log;
    ngx_queue_init(&m->running);

    ngx_shinsei_curl_dummy.fd = (ngx_socket_t) -1;

    m->timer.handler = ngx_shinsei_curl_timeout;
    m->timer.log = cycle->log;
    m->timer.data = &ngx_shinsei_curl_dummy;
    m->timer.cancelable = 1;

    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_shinsei_curl_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_shinsei_curl_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, 16L);

    ngx_shinsei_curl_multi = m;

    return NGX_OK;
}


void
ngx_shinsei_http_client_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t               *q;
    ngx_shinsei_curl_t        *req;
    ngx_shinsei_curl_multi_t  *m;

    m = ngx_shinsei_curl_multi;

    if (m == NULL) {
        return;
    }

    /* transfers still running are dropped; their owners free the handles */

    while (!ngx_queue_empty(&m->running)) {
        q = ngx_queue_head(&m->running);
        req = ngx_queue_data(q, ngx_shinsei_curl_t, queue);
        ngx_shinsei_curl_cancel(req);
    }

    if (m->timer.timer_set) {
        ngx_del_timer(&m->timer);
    }

    if (m->timer.posted) {
        ngx_delete_posted_event(&m->timer);
    }

    curl_multi_cleanup(m->multi);
    curl_global_cleanup();

    ngx_shinsei_curl_multi = NULL;
}


ngx_int_t
ngx_shinsei_curl_init(ngx_shinsei_curl_t *req, ngx_msec_t timeout)
{
    req->easy = curl_easy_init();
    if (req->easy == NULL) {
        return NGX_ERROR;
    }

    req->error[0] = '\0';
    req->running = 0;

    curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, (long) timeout);
    curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) timeout);
    curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->error);
    curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_curl_start(ngx_shinsei_curl_t *req)
{
    CURLMcode                  rc;
    ngx_shinsei_curl_multi_t  *m;

    m = ngx_shinsei_curl_multi;

    rc = curl_multi_add_handle(m->multi, req->easy);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, req->log, 0,
                      ngx_shinsei_log_prefix "curl_multi_add_handle() "
                      "failed: %s", curl_multi_strerror(rc));
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&m->running, &req->queue);
    m->nrunning++;
    req->running = 1;

    /* in-flight transfers hold a graceful shutdown until they end */
    m->timer.cancelable = 0;

    return NGX_OK;
}


void
ngx_shinsei_curl_cancel(ngx_shinsei_curl_t *req)
{
    ngx_shinsei_curl_multi_t  *m;

    m = ngx_shinsei_curl_multi;

    if (!req->running) {
        return;
    }

    curl_multi_remove_handle(m->multi, req->easy);
    ngx_queue_remove(&req->queue);

    m->nrunning--;
    req->running = 0;

    if (m->nrunning == 0) {
        m->timer.cancelable = 1;
    }
}


ngx_uint_t
ngx_shinsei_curl_running(void)
{
    return ngx_shinsei_curl_multi ? ngx_shinsei_curl_multi->nrunning : 0;
}


static int
ngx_shinsei_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_connection_t          *c;
    ngx_shinsei_curl_multi_t  *m;

    m = userp;
    c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            ngx_shinsei_curl_release(c);
            curl_multi_assign(m->multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, m->log);
        if (c == NULL) {
            return -1;
        }

        c->data = m;
        c->read->handler = ngx_shinsei_curl_event;
        c->write->handler = ngx_shinsei_curl_event;
        c->read->log = m->log;
        c->write->log = m->log;
        c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

        curl_multi_assign(m->multi, s, c);
    }

    /* level-triggered interest mirrors exactly what libcurl asked for */

    if ((what & CURL_POLL_IN) && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return -1;
        }

    } else if (!(what & CURL_POLL_IN) && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    if ((what & CURL_POLL_OUT) && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return -1;
        }

    } else if (!(what & CURL_POLL_OUT) && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return -1;
        }
    }

    return 0;
}


static int
ngx_shinsei_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_shinsei_curl_multi_t  *m = userp;

    /* libcurl must not be called from here (CURLMOPT_TIMERFUNCTION) */

    if (timeout_ms < 0) {
        if (m->timer.timer_set) {
            ngx_del_timer(&m->timer);
        }

        return 0;
    }

    ngx_add_timer(&m->timer, (ngx_msec_t) timeout_ms);

    return 0;
}


static void
ngx_shinsei_curl_event(ngx_event_t *ev)
{
    int                        running, mask;
    ngx_socket_t               fd;
    ngx_connection_t          *c;
    ngx_shinsei_curl_multi_t  *m;

    c = ev->data;
    m = c->data;
    fd = c->fd;

    mask = ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN;

    if (ev->error) {
        mask |= CURL_CSELECT_ERR;
    }

    /* c may be released inside: only fd is used afterwards */

    (void) curl_multi_socket_action(m->multi, fd, mask, &running);

    ngx_shinsei_curl_check();
}


static void
ngx_shinsei_curl_timeout(ngx_event_t *ev)
{
    int                        running;
    ngx_shinsei_curl_multi_t  *m;

    m = ngx_shinsei_curl_multi;

    ev->timedout = 0;

    (void) curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0,
                                    &running);

    ngx_shinsei_curl_check();
}


static void
ngx_shinsei_curl_check(void)
{
    int                        left;
    CURL                      *easy;
    CURLcode                   result;
    CURLMsg                   *msg;
    ngx_shinsei_curl_t        *req;
    ngx_shinsei_curl_multi_t  *m;

    m = ngx_shinsei_curl_multi;

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        result = msg->data.result;

        req = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);

        if (req == NULL || !req->running) {
            curl_multi_remove_handle(m->multi, easy);
            continue;
        }

        ngx_shinsei_curl_cancel(req);

        req->done(req, result);
    }
}


static void
ngx_shinsei_curl_release(ngx_connection_t *c)
{
    /* libcurl still holds the socket open here; it closes it itself */

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
