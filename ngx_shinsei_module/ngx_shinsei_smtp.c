
/*
 * Copyright (C) ngx_shinsei developers
 *
 * An SMTP client on nginx events (RFC 5321): connect, EHLO, STARTTLS
 * (RFC 3207) or TLS from the start (smtps, RFC 8314), AUTH PLAIN
 * (RFC 4616), MAIL, RCPT, DATA, QUIT; one message per connection.
 *
 * libcurl was the first choice, but its SMTP transfer waits for the reply
 * to the end of DATA with a blocking poll() inside the multi interface
 * (curl issue #8555, "known issue": the DONE phase of several protocols
 * blocks); a slow relay froze the worker.  Here every step waits on nginx
 * events with a timer, and TLS is nginx's own (certificate and host name
 * verified against the system's CAs, or ca_file).
 */


#include "ngx_shinsei_smtp.h"
#include "ngx_shinsei_crypto.h"


typedef enum {
    NGX_SHINSEI_SMTP_CONNECT = 0,
    NGX_SHINSEI_SMTP_GREETING,
    NGX_SHINSEI_SMTP_EHLO,
    NGX_SHINSEI_SMTP_STARTTLS,
    NGX_SHINSEI_SMTP_AUTH,
    NGX_SHINSEI_SMTP_MAIL,
    NGX_SHINSEI_SMTP_RCPT,
    NGX_SHINSEI_SMTP_DATA,
    NGX_SHINSEI_SMTP_BODY,
    NGX_SHINSEI_SMTP_QUIT
} ngx_shinsei_smtp_state_e;


static char *ngx_shinsei_smtp_configure(ngx_conf_t *cf,
    ngx_shinsei_smtp_conf_t *smtp);
static void ngx_shinsei_smtp_handler(ngx_event_t *ev);
static void ngx_shinsei_smtp_expired(ngx_event_t *ev);
static void ngx_shinsei_smtp_connected(ngx_shinsei_smtp_t *s);
static void ngx_shinsei_smtp_read(ngx_shinsei_smtp_t *s);
static ngx_int_t ngx_shinsei_smtp_reply(ngx_shinsei_smtp_t *s,
    ngx_uint_t *code, ngx_str_t *text);
static void ngx_shinsei_smtp_step(ngx_shinsei_smtp_t *s, ngx_uint_t code,
    ngx_str_t *text);
static ngx_int_t ngx_shinsei_smtp_command(ngx_shinsei_smtp_t *s,
    ngx_shinsei_smtp_state_e next, const char *fmt, ...);
static void ngx_shinsei_smtp_write(ngx_shinsei_smtp_t *s);
#if (NGX_SSL)
static void ngx_shinsei_smtp_tls(ngx_shinsei_smtp_t *s);
static void ngx_shinsei_smtp_handshaked(ngx_connection_t *c);
#endif
static void ngx_shinsei_smtp_fail(ngx_shinsei_smtp_t *s, const char *what,
    ngx_str_t *text);
static void ngx_shinsei_smtp_finish(ngx_shinsei_smtp_t *s, ngx_int_t rc);
static void ngx_shinsei_smtp_close(ngx_shinsei_smtp_t *s);


/*
 * shinsei_smtp smtp://host:port [auth_file=path] [starttls] [ca_file=path]
 *              [timeout=10s] [retry=30s] [attempts=10];
 */

char *
ngx_shinsei_smtp_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    u_char     *colon, *eol;
    ngx_int_t   n;
    ngx_str_t  *value, s, file, text;
    ngx_msec_t  ms;
    ngx_uint_t  i;

    if (smcf->smtp.url.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "smtp://", 7) != 0
        && ngx_strncmp(value[1].data, "smtps://", 8) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_smtp\": \"%V\" is not an smtp:// or "
                           "smtps:// URL", &value[1]);
        return NGX_CONF_ERROR;
    }

    smcf->smtp.url = value[1];
    smcf->smtp.timeout = 10000;
    smcf->smtp.retry = 30000;
    smcf->smtp.attempts = 10;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "starttls") == 0) {
            smcf->smtp.starttls = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "ca_file=", 8) == 0) {
            smcf->smtp.ca_file.data = value[i].data + 8;
            smcf->smtp.ca_file.len = value[i].len - 8;

            if (ngx_conf_full_name(cf->cycle, &smcf->smtp.ca_file, 1)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "attempts=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);

            if (n < 1 || n > 100) {
                goto invalid;
            }

            smcf->smtp.attempts = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0
            || ngx_strncmp(value[i].data, "retry=", 6) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            ms = ngx_parse_time(&s, 0);

            if (ms == (ngx_msec_t) NGX_ERROR || ms < 1000) {
                goto invalid;
            }

            if (value[i].data[0] == 't') {
                smcf->smtp.timeout = ms;

            } else {
                smcf->smtp.retry = ms;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "auth_file=", 10) == 0) {
            file.data = value[i].data + 10;
            file.len = value[i].len - 10;

            if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK
                || ngx_shinsei_crypto_read_file(cf, "shinsei_smtp", &file,
                                                4096, 1, cf->pool, &text)
                   != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            /* "user:password" on the first line; never logged */

            eol = ngx_strlchr(text.data, text.data + text.len, LF);
            if (eol == NULL) {
                eol = text.data + text.len;
            }

            if (eol > text.data && eol[-1] == CR) {
                eol--;
            }

            colon = ngx_strlchr(text.data, eol, ':');

            if (colon == NULL || colon == text.data) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"shinsei_smtp\": \"%V\" does not hold "
                                   "\"user:password\"", &file);
                return NGX_CONF_ERROR;
            }

            *colon = '\0';
            *eol = '\0';
            smcf->smtp.user.data = text.data;
            smcf->smtp.user.len = colon - text.data;
            smcf->smtp.password.data = colon + 1;
            smcf->smtp.password.len = eol - colon - 1;
            continue;
        }

        goto invalid;
    }

    return ngx_shinsei_smtp_configure(cf, &smcf->smtp);

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_smtp\": invalid parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * At configuration load: the URL's address (a name is resolved here,
 * once, not in the workers) and, for smtps:// or starttls, the TLS
 * context.
 */

static char *
ngx_shinsei_smtp_configure(ngx_conf_t *cf, ngx_shinsei_smtp_conf_t *smtp)
{
    ngx_url_t            u;
#if (NGX_SSL)
    ngx_pool_cleanup_t  *cln;
#endif

    ngx_memzero(&u, sizeof(ngx_url_t));

    if (ngx_strncmp(smtp->url.data, "smtps://", 8) == 0) {
        u.url.data = smtp->url.data + 8;
        u.default_port = 465;
        smtp->tls = NGX_SHINSEI_SMTP_TLS;

    } else {
        u.url.data = smtp->url.data + 7;
        u.default_port = 25;
        smtp->tls = smtp->starttls ? NGX_SHINSEI_SMTP_STARTTLS_TLS : 0;
    }

    u.url.len = smtp->url.data + smtp->url.len - u.url.data;
    u.uri_part = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_smtp\": %s in \"%V\"",
                           u.err ? u.err : "invalid URL", &smtp->url);
        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_smtp\": no address for \"%V\"",
                           &u.host);
        return NGX_CONF_ERROR;
    }

    smtp->addr = &u.addrs[0];
    smtp->host = u.host;
    smtp->host_is_addr = (ngx_inet_addr(u.host.data, u.host.len)
                          != INADDR_NONE)
                         || (u.host.len && u.host.data[0] == '[');

    if (smtp->user.len && smtp->tls == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_smtp\": auth_file needs TLS "
                           "(smtps:// or starttls): the password would "
                           "cross the network in the clear");
        return NGX_CONF_ERROR;
    }

    if (smtp->tls == 0) {
        return NGX_CONF_OK;
    }

#if (NGX_SSL)

    smtp->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (smtp->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    smtp->ssl->log = cf->log;

    if (ngx_ssl_create(smtp->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(smtp->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = smtp->ssl;

    if (smtp->ca_file.len) {
        if (ngx_ssl_trusted_certificate(cf, smtp->ssl, &smtp->ca_file, 4)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

    } else if (SSL_CTX_set_default_verify_paths(smtp->ssl->ctx) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"shinsei_smtp\": no system CA certificates");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_smtp\": TLS needs nginx built with SSL");
    return NGX_CONF_ERROR;

#endif
}


ngx_int_t
ngx_shinsei_smtp_send(ngx_shinsei_smtp_t *s, ngx_pool_t *pool,
    ngx_shinsei_smtp_conf_t *conf)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    s->pool = pool;
    s->conf = conf;
    s->state = NGX_SHINSEI_SMTP_CONNECT;
    s->tls = 0;
    s->starttls = 0;
    s->auth = 0;
    s->permanent = 0;
    s->error[0] = '\0';

    s->in = ngx_create_temp_buf(pool, 4096);
    if (s->in == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&s->peer, sizeof(ngx_peer_connection_t));
    s->peer.sockaddr = conf->addr->sockaddr;
    s->peer.socklen = conf->addr->socklen;
    s->peer.name = &conf->addr->name;
    s->peer.get = ngx_event_get_peer;
    s->peer.log = s->log;
    s->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&s->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_cpystrn(s->error, (u_char *) "cannot connect to the SMTP server",
                    sizeof(s->error));
        s->peer.connection = NULL;
        return NGX_ERROR;
    }

    c = s->peer.connection;
    c->data = s;
    c->read->handler = ngx_shinsei_smtp_handler;
    c->write->handler = ngx_shinsei_smtp_handler;
    c->pool = pool;

    s->running = 1;

    ngx_add_timer(c->write, conf->timeout);

    /*
     * Each step waits at most the timeout; the whole transfer at most
     * three times it, so that it ends well within its outbox lease.
     */

    ngx_memzero(&s->deadline, sizeof(ngx_event_t));
    s->deadline.handler = ngx_shinsei_smtp_expired;
    s->deadline.data = s;
    s->deadline.log = s->log;
    ngx_add_timer(&s->deadline, 3 * conf->timeout);

    if (rc == NGX_OK) {
        /* connected at once (loopback): go on from the event loop */
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_shinsei_smtp_cancel(ngx_shinsei_smtp_t *s)
{
    if (s->running) {
        s->running = 0;
        ngx_shinsei_smtp_close(s);
    }
}


static void
ngx_shinsei_smtp_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_shinsei_smtp_t  *s;

    c = ev->data;
    s = c->data;

    if (ev->timedout) {
        ngx_shinsei_smtp_fail(s, "the SMTP server did not answer in time",
                              NULL);
        return;
    }

    if (s->state == NGX_SHINSEI_SMTP_CONNECT) {
        if (ev->write) {
            ngx_shinsei_smtp_connected(s);
        }

        return;
    }

    if (ev->write) {
        if (s->out.len) {
            ngx_shinsei_smtp_write(s);
        }

        return;
    }

    ngx_shinsei_smtp_read(s);
}


static void
ngx_shinsei_smtp_expired(ngx_event_t *ev)
{
    ngx_shinsei_smtp_t  *s = ev->data;

    ngx_shinsei_smtp_fail(s, "the SMTP transfer took too long", NULL);
}


static void
ngx_shinsei_smtp_connected(ngx_shinsei_smtp_t *s)
{
    int                err;
    socklen_t          len;
    ngx_connection_t  *c;

    c = s->peer.connection;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_snprintf(s->error, sizeof(s->error) - 1,
                     "cannot connect to the SMTP server: %s%Z",
                     strerror(err));
        ngx_shinsei_smtp_finish(s, NGX_ERROR);
        return;
    }

    s->state = NGX_SHINSEI_SMTP_GREETING;

#if (NGX_SSL)
    if (s->conf->tls == NGX_SHINSEI_SMTP_TLS) {
        ngx_shinsei_smtp_tls(s);
        return;
    }
#endif

    ngx_add_timer(c->read, s->conf->timeout);

    if (c->read->ready) {
        ngx_shinsei_smtp_read(s);
    }
}


static void
ngx_shinsei_smtp_read(ngx_shinsei_smtp_t *s)
{
    ssize_t            n;
    ngx_str_t          text;
    ngx_int_t          rc;
    ngx_uint_t         code;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = s->peer.connection;
    b = s->in;

    for ( ;; ) {

        rc = ngx_shinsei_smtp_reply(s, &code, &text);

        if (rc == NGX_ERROR) {
            ngx_shinsei_smtp_fail(s, "the SMTP server's reply is malformed",
                                  NULL);
            return;
        }

        if (rc == NGX_OK) {
            ngx_shinsei_smtp_step(s, code, &text);
            return;
        }

        /* NGX_AGAIN: more of the reply is needed */

        if (b->pos != b->start) {
            b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
            b->pos = b->start;
        }

        if (b->last == b->end) {
            ngx_shinsei_smtp_fail(s, "the SMTP server's reply is too long",
                                  NULL);
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_shinsei_smtp_fail(s, "cannot wait for the SMTP server",
                                      NULL);
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_shinsei_smtp_fail(s, "the SMTP server closed the connection",
                                  NULL);
            return;
        }

        b->last += n;
    }
}


/*
 * A whole reply (RFC 5321 4.2.1): lines "250-..." then a last line
 * "250 ..." (or "250" alone).  text is the last line's text.
 */

static ngx_int_t
ngx_shinsei_smtp_reply(ngx_shinsei_smtp_t *s, ngx_uint_t *code,
    ngx_str_t *text)
{
    u_char     *p, *eol, *line;
    ngx_buf_t  *b;

    b = s->in;
    line = b->pos;

    for ( ;; ) {
        eol = ngx_strlchr(line, b->last, LF);
        if (eol == NULL) {
            return NGX_AGAIN;
        }

        p = line;

        if (eol - p < 4 || p[0] < '2' || p[0] > '5'
            || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        {
            return NGX_ERROR;
        }

        if (s->state == NGX_SHINSEI_SMTP_EHLO
            && eol - p > 12 && ngx_strncasecmp(p + 4, (u_char *) "STARTTLS",
                                               8) == 0)
        {
            s->starttls = 1;
        }

        if (s->state == NGX_SHINSEI_SMTP_EHLO
            && eol - p > 8 && ngx_strncasecmp(p + 4, (u_char *) "AUTH", 4)
                              == 0)
        {
            s->auth = 1;
        }

        if (p[3] == '-') {
            line = eol + 1;
            continue;
        }

        *code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');

        text->data = p;
        text->len = eol - p;

        while (text->len && (text->data[text->len - 1] == CR
                             || text->data[text->len - 1] == LF))
        {
            text->len--;
        }

        b->pos = eol + 1;

        return NGX_OK;
    }
}


static void
ngx_shinsei_smtp_step(ngx_shinsei_smtp_t *s, ngx_uint_t code,
    ngx_str_t *text)
{
    u_char                   *p, *line;
    ngx_str_t                 plain, b64;
    ngx_connection_t         *c;
    ngx_shinsei_smtp_conf_t  *conf;

    c = s->peer.connection;
    conf = s->conf;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    switch (s->state) {

    case NGX_SHINSEI_SMTP_GREETING:
        if (code != 220) {
            ngx_shinsei_smtp_fail(s, "greeting refused", text);
            return;
        }

        (void) ngx_shinsei_smtp_command(s, NGX_SHINSEI_SMTP_EHLO,
                                        "EHLO %V\r\n", &ngx_cycle->hostname);
        return;

    case NGX_SHINSEI_SMTP_EHLO:
        if (code != 250) {
            ngx_shinsei_smtp_fail(s, "EHLO refused", text);
            return;
        }

        if (conf->tls == NGX_SHINSEI_SMTP_STARTTLS_TLS && !s->tls) {
            if (!s->starttls) {
                ngx_shinsei_smtp_fail(s, "the SMTP server offers no "
                                      "STARTTLS", NULL);
                return;
            }

            (void) ngx_shinsei_smtp_command(s, NGX_SHINSEI_SMTP_STARTTLS,
                                            "STARTTLS\r\n");
            return;
        }

        if (conf->user.len) {
            if (!s->auth) {
                ngx_shinsei_smtp_fail(s, "the SMTP server offers no AUTH",
                                      NULL);
                return;
            }

            /*
             * RFC 4616: authzid NUL authcid NUL passwd, in base64, encoded
             * straight into the line sent: the only copy, wiped once
             * written or when the transfer ends (ngx_shinsei_smtp_close)
             */

            plain.len = conf->user.len + conf->password.len + 2;
            plain.data = ngx_pnalloc(s->pool, plain.len);
            line = ngx_pnalloc(s->pool, sizeof("AUTH PLAIN \r\n") - 1
                                        + ngx_base64_encoded_length(plain.len));

            if (plain.data == NULL || line == NULL) {
                ngx_shinsei_smtp_fail(s, "out of memory", NULL);
                return;
            }

            p = plain.data;
            *p++ = '\0';
            p = ngx_cpymem(p, conf->user.data, conf->user.len);
            *p++ = '\0';
            ngx_memcpy(p, conf->password.data, conf->password.len);

            b64.data = ngx_cpymem(line, "AUTH PLAIN ", 11);
            ngx_encode_base64(&b64, &plain);
            ngx_explicit_memzero(plain.data, plain.len);

            p = b64.data + b64.len;
            *p++ = CR;
            *p++ = LF;

            s->out.data = line;
            s->out.len = p - line;
            s->sent = line;
            s->state = NGX_SHINSEI_SMTP_AUTH;
            s->secret = 1;

            /* s may be gone after this: nothing follows it */
            ngx_shinsei_smtp_write(s);
            return;
        }

        /* fall through */

    case NGX_SHINSEI_SMTP_AUTH:
        if (s->state == NGX_SHINSEI_SMTP_AUTH && code != 235) {
            ngx_shinsei_smtp_fail(s, "authentication refused", text);
            return;
        }

        (void) ngx_shinsei_smtp_command(s, NGX_SHINSEI_SMTP_MAIL,
                                        "MAIL FROM:<%V>\r\n", &s->from);
        return;

    case NGX_SHINSEI_SMTP_STARTTLS:
        if (code != 220) {
            ngx_shinsei_smtp_fail(s, "STARTTLS refused", text);
            return;
        }

#if (NGX_SSL)
        ngx_shinsei_smtp_tls(s);
#endif
        return;

    case NGX_SHINSEI_SMTP_MAIL:
        if (code != 250) {
            /* a 5xx here says more of the relay than of the message */
            ngx_shinsei_smtp_fail(s, "sender refused", text);
            return;
        }

        (void) ngx_shinsei_smtp_command(s, NGX_SHINSEI_SMTP_RCPT,
                                        "RCPT TO:<%V>\r\n", &s->to);
        return;

    case NGX_SHINSEI_SMTP_RCPT:
        if (code != 250 && code != 251) {
            s->permanent = (code >= 500);
            ngx_shinsei_smtp_fail(s, "recipient refused", text);
            return;
        }

        (void) ngx_shinsei_smtp_command(s, NGX_SHINSEI_SMTP_DATA,
                                        "DATA\r\n");
        return;

    case NGX_SHINSEI_SMTP_DATA:
        if (code != 354) {
            ngx_shinsei_smtp_fail(s, "DATA refused", text);
            return;
        }

        /* the message, already dot-stuffed, and its end "." */

        s->state = NGX_SHINSEI_SMTP_BODY;
        s->out = s->message;
        s->sent = s->out.data;
        ngx_shinsei_smtp_write(s);
        return;

    case NGX_SHINSEI_SMTP_BODY:
        if (code != 250) {
            s->permanent = (code >= 500);
            ngx_shinsei_smtp_fail(s, "message refused", text);
            return;
        }

        /* accepted: the rest is courtesy */

        ngx_shinsei_smtp_finish(s, NGX_OK);
        return;

    default:
        ngx_shinsei_smtp_fail(s, "unexpected reply", text);
        return;
    }
}


static ngx_int_t
ngx_shinsei_smtp_command(ngx_shinsei_smtp_t *s,
    ngx_shinsei_smtp_state_e next, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_pnalloc(s->pool, 1024);
    if (p == NULL) {
        ngx_shinsei_smtp_fail(s, "out of memory", NULL);
        return NGX_ERROR;
    }

    va_start(args, fmt);
    s->out.len = ngx_vslprintf(p, p + 1024, fmt, args) - p;
    va_end(args);

    s->out.data = p;
    s->sent = p;
    s->state = next;

    ngx_shinsei_smtp_write(s);

    return NGX_OK;
}


static void
ngx_shinsei_smtp_write(ngx_shinsei_smtp_t *s)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->peer.connection;

    while (s->sent < s->out.data + s->out.len) {

        n = c->send(c, s->sent, s->out.data + s->out.len - s->sent);

        if (n == NGX_AGAIN) {
            if (!c->write->timer_set) {
                ngx_add_timer(c->write, s->conf->timeout);
            }

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_shinsei_smtp_fail(s, "cannot write to the SMTP server",
                                      NULL);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_shinsei_smtp_fail(s, "cannot write to the SMTP server",
                                  NULL);
            return;
        }

        s->sent += n;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (s->secret) {
        ngx_explicit_memzero(s->out.data, s->out.len);
        s->secret = 0;
    }

    s->out.len = 0;

    /* level-triggered event methods would report writability forever */

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_shinsei_smtp_fail(s, "cannot wait for the SMTP server", NULL);
        return;
    }

    /* all written: the reply is awaited */

    ngx_add_timer(c->read, s->conf->timeout);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_shinsei_smtp_fail(s, "cannot wait for the SMTP server", NULL);
        return;
    }

    if (c->read->ready) {
        ngx_shinsei_smtp_read(s);
    }
}


#if (NGX_SSL)

static void
ngx_shinsei_smtp_tls(ngx_shinsei_smtp_t *s)
{
    u_char            *name;
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = s->peer.connection;

    if (ngx_ssl_create_connection(s->conf->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_shinsei_smtp_fail(s, "cannot start TLS", NULL);
        return;
    }

    /* SNI: the name of the URL, never an address (RFC 6066 3) */

    if (!s->conf->host_is_addr) {
        name = ngx_pnalloc(s->pool, s->conf->host.len + 1);
        if (name == NULL) {
            ngx_shinsei_smtp_fail(s, "out of memory", NULL);
            return;
        }

        *ngx_cpymem(name, s->conf->host.data, s->conf->host.len) = '\0';

        if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) name)
            != 1)
        {
            ngx_shinsei_smtp_fail(s, "cannot set the TLS server name", NULL);
            return;
        }
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, s->conf->timeout);
        }

        c->ssl->handler = ngx_shinsei_smtp_handshaked;
        return;
    }

    ngx_shinsei_smtp_handshaked(c);
}


static void
ngx_shinsei_smtp_handshaked(ngx_connection_t *c)
{
    long                 rc;
    ngx_shinsei_smtp_t  *s;

    s = c->data;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!c->ssl->handshaked) {
        ngx_shinsei_smtp_fail(s, "TLS handshake with the SMTP server failed",
                              NULL);
        return;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_snprintf(s->error, sizeof(s->error) - 1,
                     "the SMTP server's certificate is not trusted: %s%Z",
                     X509_verify_cert_error_string(rc));
        ngx_shinsei_smtp_finish(s, NGX_ERROR);
        return;
    }

    if (ngx_ssl_check_host(c, &s->conf->host) != NGX_OK) {
        ngx_shinsei_smtp_fail(s, "the SMTP server's certificate is not for "
                              "its name", NULL);
        return;
    }

    s->tls = 1;
    c->read->handler = ngx_shinsei_smtp_handler;
    c->write->handler = ngx_shinsei_smtp_handler;

    if (s->state == NGX_SHINSEI_SMTP_GREETING) {
        /* smtps: the greeting comes over TLS */
        ngx_add_timer(c->read, s->conf->timeout);

        if (c->read->ready) {
            ngx_shinsei_smtp_read(s);
        }

        return;
    }

    /* after STARTTLS everything learned before is forgotten (RFC 3207) */

    s->auth = 0;
    s->in->pos = s->in->start;
    s->in->last = s->in->start;

    (void) ngx_shinsei_smtp_command(s, NGX_SHINSEI_SMTP_EHLO, "EHLO %V\r\n",
                                    &ngx_cycle->hostname);
}

#endif


static void
ngx_shinsei_smtp_fail(ngx_shinsei_smtp_t *s, const char *what,
    ngx_str_t *text)
{
    u_char     *p, *last;
    ngx_str_t   code;

    /*
     * Of the server's reply only the code and the enhanced status code
     * ("550 5.1.1") are kept: the text may quote the address.
     */

    if (text && text->len >= 3) {
        code.data = text->data;
        p = text->data + 3;
        last = text->data + text->len;

        if (p < last && (*p == ' ' || *p == '-')) {
            p++;

            while (p < last && ((*p >= '0' && *p <= '9') || *p == '.')) {
                p++;
            }
        }

        code.len = p - code.data;

        while (code.len && (code.data[code.len - 1] == ' '
                            || code.data[code.len - 1] == '-'))
        {
            code.len--;
        }

        p = ngx_snprintf(s->error, sizeof(s->error) - 1, "%s: %V", what,
                         &code);

    } else {
        p = ngx_snprintf(s->error, sizeof(s->error) - 1, "%s", what);
    }

    *p = '\0';

    ngx_shinsei_smtp_finish(s, NGX_ERROR);
}


static void
ngx_shinsei_smtp_finish(ngx_shinsei_smtp_t *s, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = s->peer.connection;

    if (rc == NGX_OK && c && !c->error) {
        /* a polite end; the reply is not awaited */
        (void) c->send(c, (u_char *) "QUIT\r\n", 6);
    }

    s->running = 0;
    ngx_shinsei_smtp_close(s);

    s->done(s, rc);
}


static void
ngx_shinsei_smtp_close(ngx_shinsei_smtp_t *s)
{
    ngx_connection_t  *c;

    if (s->deadline.timer_set) {
        ngx_del_timer(&s->deadline);
    }

    if (s->secret) {
        /* ended before the AUTH line was all written */
        ngx_explicit_memzero(s->out.data, s->out.len);
        s->secret = 0;
    }

    c = s->peer.connection;

    if (c == NULL) {
        return;
    }

    s->peer.connection = NULL;

#if (NGX_SSL)
    if (c->ssl) {
        /* no close_notify: a blocked send would leave SSL unfreed */
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    ngx_close_connection(c);
}
