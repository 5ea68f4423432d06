
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Mail, through an outbox that never loses a message.
 *
 * A handler builds a mail with ngx_shinsei_mail_build() (a text template,
 * its first line "Subject: ..."), and its SQL writes it to the outbox with
 * enqueue_mail() in the same transaction as the change causing it.
 *
 * Every worker runs a drainer: on a timer, and at once when PostgreSQL
 * NOTIFYs shinsei_outbox, it claims due rows (FOR UPDATE SKIP LOCKED, with
 * a lease so a crashed worker's rows are taken over), sends each through
 * SMTP on nginx events (ngx_shinsei_smtp.c), and marks it sent, or due
 * again later
 * (growing pauses), or dead after the last attempt with the error kept.
 */


#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_pg.h"
#include "ngx_shinsei_string.h"
#include "ngx_shinsei_smtp.h"
#include "ngx_shinsei_tmpl.h"

#include <openssl/rand.h>


#define NGX_SHINSEI_MAIL_BATCH      16
#define NGX_SHINSEI_MAIL_POLL       5000


typedef struct ngx_shinsei_mail_drainer_s  ngx_shinsei_mail_drainer_t;


typedef struct {
    ngx_shinsei_smtp_t            smtp;
    ngx_shinsei_pg_query_t        mark;
    ngx_shinsei_mail_drainer_t   *drainer;
    ngx_str_t                     id;
    ngx_str_t                     claim;
    const char                   *params[6];
    u_char                        error[300];
} ngx_shinsei_mail_msg_t;


struct ngx_shinsei_mail_drainer_s {
    ngx_shinsei_main_conf_t      *smcf;
    ngx_log_t                    *log;
    ngx_event_t                   timer;
    ngx_pool_t                   *pool;
    ngx_shinsei_pg_query_t        claim;
    const char                   *claim_params[3];
    ngx_shinsei_mail_msg_t       *msgs;
    ngx_uint_t                    nmsgs;
    ngx_uint_t                    outstanding;
    ngx_uint_t                    failures;     /* of its queries */
    unsigned                      busy:1;
    unsigned                      again:1;
};


static void ngx_shinsei_mail_wake(ngx_str_t *channel, ngx_str_t *payload,
    void *data);
static void ngx_shinsei_mail_tick(ngx_event_t *ev);
static void ngx_shinsei_mail_claimed(ngx_shinsei_pg_query_t *q);
static ngx_int_t ngx_shinsei_mail_send(ngx_shinsei_mail_drainer_t *d,
    ngx_shinsei_mail_msg_t *m, PGresult *res, int row);
static ngx_int_t ngx_shinsei_mail_compose(ngx_pool_t *pool, ngx_str_t *out,
    ngx_str_t *date, ngx_str_t *from_addr, ngx_str_t *from_name,
    ngx_str_t *to, ngx_str_t *subject, ngx_str_t *message_id,
    ngx_str_t *body);
static u_char *ngx_shinsei_mail_encode_words(u_char *p, ngx_str_t *text);
static ngx_int_t ngx_shinsei_mail_message_id(ngx_pool_t *pool,
    ngx_str_t *from, ngx_str_t *id);
static ngx_uint_t ngx_shinsei_mail_header_safe(ngx_str_t *s);
static void ngx_shinsei_mail_sent(ngx_shinsei_smtp_t *smtp, ngx_int_t rc);
static void ngx_shinsei_mail_mark(ngx_shinsei_mail_msg_t *m,
    const char *error, ngx_uint_t permanent);
static void ngx_shinsei_mail_marked(ngx_shinsei_pg_query_t *q);
static void ngx_shinsei_mail_batch_done(ngx_shinsei_mail_drainer_t *d);
static void ngx_shinsei_mail_free_msg(ngx_shinsei_mail_msg_t *m);


static ngx_shinsei_mail_drainer_t  *ngx_shinsei_mail_drainer;
static ngx_connection_t             ngx_shinsei_mail_dummy;


/*
 * $1 how many, $2 the lease in seconds: longer than one SMTP transfer may
 * take (the client's own deadline), after which another worker may take
 * the row over; $3 this worker's pid, kept for operators.  Each claim gets
 * a fresh token; the outcome is recorded only under the token it was sent
 * with, so a worker whose lease ran out cannot overwrite what the worker
 * that took the row over recorded.
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_mail_claim_stmt =
    ngx_shinsei_pg_stmt(
    "UPDATE outbox o SET status = 'sending', attempts = o.attempts + 1,"
    " claimed_until = now() + make_interval(secs => $2::int),"
    " claim = gen_random_uuid(), claimed_by = $3::int"
    " FROM (SELECT id FROM outbox"
    "  WHERE status IN ('pending', 'sending')"
    "  AND ((status = 'pending' AND next_attempt_at <= now())"
    "       OR (status = 'sending' AND claimed_until < now()))"
    "  ORDER BY next_attempt_at LIMIT $1::int"
    "  FOR UPDATE SKIP LOCKED) due"
    " WHERE o.id = due.id"
    " RETURNING o.id, o.recipient_enc, o.from_addr, o.from_name,"
    " o.subject, o.body_enc, o.message_id,"
    " to_char(o.created_at AT TIME ZONE 'UTC',"
    "  'Dy, DD Mon YYYY HH24:MI:SS \"+0000\"'), o.claim");


static ngx_shinsei_pg_stmt_t  ngx_shinsei_mail_sent_stmt =
    ngx_shinsei_pg_stmt(
    "UPDATE outbox SET status = 'sent', sent_at = now(),"
    " claimed_until = NULL, last_error = NULL"
    " WHERE id = $1::bigint AND status = 'sending' AND claim = $2::uuid");


/*
 * $3 the first pause in seconds, doubled after each failure, up to 1 h;
 * $4 the attempts allowed; $5 true when trying again cannot help (the
 * mail cannot be decrypted, a header holds a line break).
 */

static ngx_shinsei_pg_stmt_t  ngx_shinsei_mail_failed_stmt =
    ngx_shinsei_pg_stmt(
    "UPDATE outbox SET status = CASE WHEN attempts >= $4::int OR $5::bool"
    "  THEN 'dead' ELSE 'pending' END,"
    " next_attempt_at = now() + make_interval(secs =>"
    "  least($3::int * power(2, attempts - 1), 3600)),"
    " claimed_until = NULL, last_error = $2"
    " WHERE id = $1::bigint AND status = 'sending' AND claim = $6::uuid"
    " RETURNING status, attempts");


ngx_int_t
ngx_shinsei_mail_build(ngx_http_request_t *r, ngx_shinsei_ctx_t *ctx,
    const char *template, ngx_str_t *to, cJSON *vars, ngx_str_t *json)
{
    char                     *text;
    u_char                   *p, *nl, *last, account[64];
    u_char                    aad[NGX_SHINSEI_AAD_LEN];
    cJSON                    *site, *city, *name, *mail;
    ngx_int_t                 rc;
    ngx_str_t                 tname, rendered, subject, body, enc, index, mid;
    ngx_shinsei_tmpl_t       *t;
    ngx_shinsei_srv_conf_t   *sscf;
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_shinsei_module);
    sscf = ngx_http_get_module_srv_conf(r, ngx_shinsei_module);

    rc = NGX_ERROR;
    mail = NULL;

    tname.data = (u_char *) template;
    tname.len = ngx_strlen(template);

    t = ngx_shinsei_tmpl_find(smcf->templates, &tname);
    if (t == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      ngx_shinsei_log_prefix "no mail template \"%V\"",
                      &tname);
        goto done;
    }

    city = ctx->tenant ? ctx->tenant->city : NULL;
    name = city ? cJSON_GetObjectItemCaseSensitive(city, "name") : NULL;

    if (!cJSON_IsString(name) || sscf->mail_from.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "no sender for mail \"%V\": "
                      "shinsei_mail_from and the city name are needed",
                      &tname);
        goto done;
    }

    site = cJSON_AddObjectToObject(vars, "site");
    if (site == NULL
        || cJSON_AddItemReferenceToObject(site, "city", city) == 0
        || cJSON_AddStringToObject(site, "url",
                                   ngx_shinsei_string_cstr(r->pool,
                                                           &sscf->site_url))
           == NULL)
    {
        goto done;
    }

    if (ngx_shinsei_tmpl_render_str(t, vars, r->pool, &rendered) != NGX_OK) {
        goto done;
    }

    /* the first line is "Subject: ...", then a blank line, then the body */

    last = rendered.data + rendered.len;
    nl = ngx_strlchr(rendered.data, last, LF);

    if (nl == NULL || rendered.len < 9
        || ngx_strncmp(rendered.data, "Subject: ", 9) != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      ngx_shinsei_log_prefix "mail template \"%V\" does not "
                      "start with \"Subject: \"", &tname);
        goto done;
    }

    subject.data = rendered.data + 9;
    subject.len = nl - subject.data;

    p = nl + 1;

    if (p < last && *p == LF) {
        p++;
    }

    body.data = p;
    body.len = last - p;

    mail = cJSON_CreateObject();
    if (mail == NULL) {
        goto done;
    }

    /* the hourly caps (sql/011): of the address, and of who caused it */

    if (ngx_shinsei_crypto_blind_index(r->pool, to, &index) != NGX_OK
        || cJSON_AddStringToObject(mail, "recipient_index",
                                   ngx_shinsei_string_cstr(r->pool, &index))
           == NULL)
    {
        goto done;
    }

    if (ctx->session.user_id) {
        *ngx_sprintf(account, "%V:%L", &ctx->app->name,
                     ctx->session.user_id) = '\0';

        if (cJSON_AddStringToObject(mail, "account", (char *) account)
            == NULL)
        {
            goto done;
        }
    }

    /*
     * The Message-ID, fixed here: a mail sent again after a crash is the
     * same message, and its encrypted values name it (finding 10).
     */

    if (ngx_shinsei_mail_message_id(r->pool, &sscf->mail_from, &mid)
        != NGX_OK
        || cJSON_AddStringToObject(mail, "message_id",
                                   ngx_shinsei_string_cstr(r->pool, &mid))
           == NULL)
    {
        goto done;
    }

    if (ngx_shinsei_crypto_encrypt(r->pool, to,
                        ngx_shinsei_crypto_aad(aad, "outbox.recipient_enc",
                                               &mid),
                        &enc)
        != NGX_OK
        || cJSON_AddStringToObject(mail, "recipient_enc",
                                   ngx_shinsei_string_cstr(r->pool, &enc))
           == NULL
        || ngx_shinsei_crypto_encrypt(r->pool, &body,
                              ngx_shinsei_crypto_aad(aad, "outbox.body_enc",
                                                     &mid),
                              &enc)
           != NGX_OK
        || cJSON_AddStringToObject(mail, "body_enc",
                                   ngx_shinsei_string_cstr(r->pool, &enc))
           == NULL
        || cJSON_AddStringToObject(mail, "subject",
                                   ngx_shinsei_string_cstr(r->pool, &subject))
           == NULL
        || cJSON_AddStringToObject(mail, "from_addr",
                                   ngx_shinsei_string_cstr(r->pool,
                                                           &sscf->mail_from))
           == NULL
        || cJSON_AddStringToObject(mail, "from_name", name->valuestring)
           == NULL)
    {
        goto done;
    }

    text = cJSON_PrintUnformatted(mail);
    if (text == NULL) {
        goto done;
    }

    json->len = ngx_strlen(text);
    json->data = ngx_pnalloc(r->pool, json->len);

    if (json->data) {
        ngx_memcpy(json->data, text, json->len);
        rc = NGX_OK;
    }

    cJSON_free(text);

done:

    cJSON_Delete(mail);
    cJSON_Delete(vars);

    return rc;
}


ngx_int_t
ngx_shinsei_mail_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf)
{
    ngx_shinsei_mail_drainer_t  *d;

    d = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_mail_drainer_t));
    if (d == NULL) {
        return NGX_ERROR;
    }

    d->smcf = smcf;
    d->log = cycle->log;

    ngx_shinsei_mail_dummy.fd = (ngx_socket_t) -1;

    d->timer.handler = ngx_shinsei_mail_tick;
    d->timer.data = &ngx_shinsei_mail_dummy;
    d->timer.log = cycle->log;
    d->timer.cancelable = 1;

    ngx_shinsei_mail_drainer = d;

    ngx_add_timer(&d->timer, NGX_SHINSEI_MAIL_POLL);

    /* the LISTEN connection calls ngx_shinsei_mail_wake() once it is up */

    return ngx_shinsei_pg_listen(cycle, "shinsei_outbox",
                                 ngx_shinsei_mail_wake, d);
}


/* the failed queries of this worker's drainer, for /healthz */

ngx_uint_t
ngx_shinsei_mail_failures(void)
{
    return ngx_shinsei_mail_drainer ? ngx_shinsei_mail_drainer->failures : 0;
}


void
ngx_shinsei_mail_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_shinsei_mail_drainer_t  *d;

    d = ngx_shinsei_mail_drainer;

    if (d == NULL) {
        return;
    }

    if (d->timer.timer_set) {
        ngx_del_timer(&d->timer);
    }

    if (d->timer.posted) {
        ngx_delete_posted_event(&d->timer);
    }

    /* the rows claimed stay claimed until their lease ends: not lost */

    if (d->busy) {
        ngx_shinsei_pg_cancel(&d->claim);

        for (i = 0; i < d->nmsgs; i++) {
            ngx_shinsei_pg_cancel(&d->msgs[i].mark);
            ngx_shinsei_mail_free_msg(&d->msgs[i]);
        }

        ngx_destroy_pool(d->pool);
        d->pool = NULL;
    }

    ngx_shinsei_mail_drainer = NULL;
}


static void
ngx_shinsei_mail_wake(ngx_str_t *channel, ngx_str_t *payload, void *data)
{
    ngx_shinsei_mail_drainer_t  *d = data;

    if (d->busy) {
        d->again = 1;
        return;
    }

    if (!d->timer.posted) {
        if (d->timer.timer_set) {
            ngx_del_timer(&d->timer);
        }

        ngx_post_event(&d->timer, &ngx_posted_events);
    }
}


static void
ngx_shinsei_mail_tick(ngx_event_t *ev)
{
    u_char                      *p;
    ngx_shinsei_mail_drainer_t  *d;

    d = ngx_shinsei_mail_drainer;

    ev->timedout = 0;

    if (d == NULL || d->busy || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    d->pool = ngx_create_pool(4096, d->log);
    if (d->pool == NULL) {
        ngx_add_timer(&d->timer, NGX_SHINSEI_MAIL_POLL);
        return;
    }

    d->busy = 1;
    d->again = 0;
    d->nmsgs = 0;
    d->outstanding = 0;

    p = ngx_pnalloc(d->pool, 3 * NGX_INT_T_LEN + 3);
    if (p == NULL) {
        ngx_shinsei_mail_batch_done(d);
        return;
    }

    d->claim_params[0] = (char *) p;
    p = ngx_sprintf(p, "%d", NGX_SHINSEI_MAIL_BATCH);
    *p++ = '\0';
    d->claim_params[1] = (char *) p;
    p = ngx_sprintf(p, "%M", 4 * d->smcf->smtp.timeout / 1000 + 10);
    *p++ = '\0';
    d->claim_params[2] = (char *) p;
    p = ngx_sprintf(p, "%P", ngx_pid);
    *p = '\0';

    ngx_memzero(&d->claim, sizeof(ngx_shinsei_pg_query_t));
    d->claim.stmt = &ngx_shinsei_mail_claim_stmt;
    d->claim.nparams = 3;
    d->claim.values = d->claim_params;
    d->claim.done = ngx_shinsei_mail_claimed;
    d->claim.data = d;
    d->claim.log = d->log;

    ngx_shinsei_pg_send(&d->claim);
}


static void
ngx_shinsei_mail_claimed(ngx_shinsei_pg_query_t *q)
{
    int                          i, n;
    ngx_int_t                    rc;
    ngx_shinsei_mail_msg_t      *m;
    ngx_shinsei_mail_drainer_t  *d;

    d = q->data;

    if (q->status != NGX_SHINSEI_PG_OK) {
        /* the next tick tries again */
        ngx_shinsei_pg_log_failure(q, NGX_LOG_ERR, "the outbox claim");
        d->failures++;
        ngx_shinsei_mail_batch_done(d);
        return;
    }

    n = PQntuples(q->result);

    if (n == 0) {
        ngx_shinsei_mail_batch_done(d);
        return;
    }

    /* a full batch means there may be more */
    d->again |= (n == NGX_SHINSEI_MAIL_BATCH);

    d->msgs = ngx_pcalloc(d->pool, n * sizeof(ngx_shinsei_mail_msg_t));
    if (d->msgs == NULL) {
        ngx_shinsei_mail_batch_done(d);
        return;
    }

    d->nmsgs = n;

    /* one count for the loop itself, so no message ends the batch early */

    d->outstanding = n + 1;

    for (i = 0; i < n; i++) {
        m = &d->msgs[i];
        m->drainer = d;

        rc = ngx_shinsei_mail_send(d, m, q->result, i);

        if (rc == NGX_OK) {
            continue;
        }

        if (m->claim.len == 0) {
            /* not even the row's id and token: its lease runs out */
            ngx_log_error(NGX_LOG_WARN, d->log, 0,
                          ngx_shinsei_log_prefix "mail not sent: %s; it is "
                          "tried again after its lease", m->error);
            d->outstanding--;
            continue;
        }

        ngx_log_error(NGX_LOG_WARN, d->log, 0,
                      ngx_shinsei_log_prefix "mail %V not sent: %s",
                      &m->id, m->error);

        /* NGX_ERROR: the row itself is bad, trying again cannot help */
        ngx_shinsei_mail_mark(m, (char *) m->error, rc == NGX_ERROR);
    }

    if (--d->outstanding == 0) {
        ngx_shinsei_mail_batch_done(d);
    }
}


static ngx_int_t
ngx_shinsei_mail_send(ngx_shinsei_mail_drainer_t *d,
    ngx_shinsei_mail_msg_t *m, PGresult *res, int row)
{
    u_char      aad[NGX_SHINSEI_AAD_LEN];
    ngx_str_t   field[9], to, body;
    ngx_uint_t  i;

    /*
     * 0 id, 1 recipient, 2 from, 3 from name, 4 subject, 5 body,
     * 6 Message-ID, 7 date, 8 claim token.
     *
     * Returns NGX_ERROR when the row cannot ever be sent, NGX_DECLINED
     * when it may be sent later (out of memory now).
     */

    for (i = 0; i < 9; i++) {
        field[i].len = PQgetlength(res, row, i);
        field[i].data = ngx_pnalloc(d->pool, field[i].len + 1);

        if (field[i].data == NULL) {
            ngx_cpystrn(m->error, (u_char *) "out of memory",
                        sizeof(m->error));
            return NGX_DECLINED;
        }

        ngx_memcpy(field[i].data, PQgetvalue(res, row, i), field[i].len);
        field[i].data[field[i].len] = '\0';
    }

    m->id = field[0];
    m->claim = field[8];

    if (ngx_shinsei_crypto_decrypt(d->pool, &field[1],
                        ngx_shinsei_crypto_aad(aad, "outbox.recipient_enc",
                                               &field[6]),
                        &to)
        != NGX_OK
        || ngx_shinsei_crypto_decrypt(d->pool, &field[5],
                              ngx_shinsei_crypto_aad(aad, "outbox.body_enc",
                                                     &field[6]),
                              &body)
           != NGX_OK)
    {
        ngx_cpystrn(m->error, (u_char *) "cannot decrypt: unknown data key"
                    " or not this row's value", sizeof(m->error));
        return NGX_ERROR;
    }

    /* RFC 5322 headers: CR or LF in any value would start a new header */

    if (!ngx_shinsei_mail_header_safe(&to)
        || !ngx_shinsei_mail_header_safe(&field[2])
        || !ngx_shinsei_mail_header_safe(&field[3])
        || !ngx_shinsei_mail_header_safe(&field[4])
        || !ngx_shinsei_mail_header_safe(&field[6]))
    {
        ngx_cpystrn(m->error, (u_char *) "refused: a header value holds "
                    "CR, LF or another control character", sizeof(m->error));
        return NGX_ERROR;
    }

    if (ngx_shinsei_mail_compose(d->pool, &m->smtp.message, &field[7],
                                 &field[2], &field[3], &to, &field[4],
                                 &field[6], &body)
        != NGX_OK)
    {
        ngx_cpystrn(m->error, (u_char *) "out of memory", sizeof(m->error));
        return NGX_DECLINED;
    }

    m->smtp.from = field[2];
    m->smtp.to = to;
    m->smtp.log = d->log;
    m->smtp.data = m;
    m->smtp.done = ngx_shinsei_mail_sent;

    if (ngx_shinsei_smtp_send(&m->smtp, d->pool, &d->smcf->smtp) != NGX_OK) {
        /* cannot even connect: tried again later, like a refusal */
        ngx_cpystrn(m->error, m->smtp.error, sizeof(m->error));
        ngx_shinsei_mail_mark(m, (char *) m->error, 0);
        return NGX_OK;
    }

    return NGX_OK;
}


/*
 * RFC 5322 with RFC 2047 encoded words for the Japanese subject and
 * sender name, and the UTF-8 body in base64 (RFC 2045): no line is long,
 * no line starts with a dot.
 */

static ngx_int_t
ngx_shinsei_mail_compose(ngx_pool_t *pool, ngx_str_t *out, ngx_str_t *date,
    ngx_str_t *from_addr, ngx_str_t *from_name, ngx_str_t *to,
    ngx_str_t *subject, ngx_str_t *message_id, ngx_str_t *body)
{
    u_char     *p, *q, *crlf, *last;
    size_t      len, n;
    ngx_str_t   src, dst;

    /* the body's line ends become CRLF, the canonical form of text */

    crlf = ngx_pnalloc(pool, 2 * body->len + 2);
    if (crlf == NULL) {
        return NGX_ERROR;
    }

    q = crlf;
    last = body->data + body->len;

    for (p = body->data; p < last; p++) {
        if (*p == LF && (p == body->data || p[-1] != CR)) {
            *q++ = CR;
        }

        *q++ = *p;
    }

    src.data = crlf;
    src.len = q - crlf;

    len = sizeof("Date: \r\nFrom:  <>\r\nTo: \r\nSubject: \r\n"
                 "Message-ID: <>\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=UTF-8\r\n"
                 "Content-Transfer-Encoding: base64\r\n"
                 "Auto-Submitted: auto-generated\r\n\r\n")
          + date->len + from_addr->len + to->len + message_id->len
          + 4 * (from_name->len + subject->len) + 64
          + ngx_base64_encoded_length(src.len) * 78 / 76 + 16;

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->data, "Date: %V\r\nFrom: ", date);
    p = ngx_shinsei_mail_encode_words(p, from_name);
    p = ngx_sprintf(p, " <%V>\r\nTo: %V\r\nSubject: ", from_addr, to);
    p = ngx_shinsei_mail_encode_words(p, subject);
    p = ngx_sprintf(p, "\r\nMessage-ID:\r\n <%V>\r\n"
                    "MIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=UTF-8\r\n"
                    "Content-Transfer-Encoding: base64\r\n"
                    "Auto-Submitted: auto-generated\r\n\r\n", message_id);

    dst.data = ngx_pnalloc(pool, ngx_base64_encoded_length(src.len));
    if (dst.data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64(&dst, &src);

    for (q = dst.data; q < dst.data + dst.len; q += n) {
        n = ngx_min(76, (size_t) (dst.data + dst.len - q));
        p = ngx_cpymem(p, q, n);
        *p++ = CR;
        *p++ = LF;
    }

    /* the end of DATA (RFC 5321 4.1.1.4); base64 lines never start with
     * a dot, so nothing needs stuffing */

    *p++ = '.';
    *p++ = CR;
    *p++ = LF;

    out->len = p - out->data;

    return NGX_OK;
}


/* RFC 5322 3.6.4: 128 random bits in hex "@" the sender's domain */

static ngx_int_t
ngx_shinsei_mail_message_id(ngx_pool_t *pool, ngx_str_t *from, ngx_str_t *id)
{
    u_char  *at, *p, rnd[16];

    at = ngx_strlchr(from->data, from->data + from->len, '@');
    if (at == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    id->data = ngx_pnalloc(pool, 2 * sizeof(rnd) + (from->data + from->len
                                                     - at));
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_hex_dump(id->data, rnd, sizeof(rnd));
    p = ngx_cpymem(p, at, from->data + from->len - at);

    id->len = p - id->data;

    return NGX_OK;
}


/*
 * RFC 2047: "=?UTF-8?B?...?=" words of at most 75 characters, each
 * holding whole characters (45 octets at most), folded onto new lines.
 */

static u_char *
ngx_shinsei_mail_encode_words(u_char *p, ngx_str_t *text)
{
    u_char     *s, *last, *end;
    size_t      max;
    ngx_str_t   src, dst;

    s = text->data;
    last = text->data + text->len;

    while (s < last) {

        /*
         * lines of at most 76 characters (RFC 2047 2): the first word
         * shares its line with "Subject: ", the others with one space
         */

        max = (s == text->data) ? 39 : 45;
        end = s + ngx_min(max, (size_t) (last - s));

        /* do not cut a UTF-8 sequence */
        while (end < last && end > s && (*end & 0xc0) == 0x80) {
            end--;
        }

        if (end == s) {
            /* not UTF-8 at all: cut anyway rather than loop */
            end = s + ngx_min(max, (size_t) (last - s));
        }

        if (s != text->data) {
            p = ngx_cpymem(p, "\r\n ", 3);
        }

        src.data = s;
        src.len = end - s;
        p = ngx_cpymem(p, "=?UTF-8?B?", 10);
        dst.data = p;
        ngx_encode_base64(&dst, &src);
        p += dst.len;
        p = ngx_cpymem(p, "?=", 2);

        s = end;
    }

    return p;
}


static ngx_uint_t
ngx_shinsei_mail_header_safe(ngx_str_t *s)
{
    u_char  *p;

    for (p = s->data; p < s->data + s->len; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return 0;
        }
    }

    return s->len > 0;
}


static void
ngx_shinsei_mail_sent(ngx_shinsei_smtp_t *smtp, ngx_int_t rc)
{
    ngx_shinsei_mail_msg_t  *m;

    m = smtp->data;

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, m->drainer->log, 0,
                      ngx_shinsei_log_prefix "mail %V sent", &m->id);
        ngx_shinsei_mail_mark(m, NULL, 0);
        return;
    }

    ngx_cpystrn(m->error, smtp->error, sizeof(m->error));

    ngx_log_error(NGX_LOG_WARN, m->drainer->log, 0,
                  ngx_shinsei_log_prefix "mail %V not sent: %s",
                  &m->id, m->error);

    ngx_shinsei_mail_mark(m, (char *) m->error, smtp->permanent);
}


static void
ngx_shinsei_mail_mark(ngx_shinsei_mail_msg_t *m, const char *error,
    ngx_uint_t permanent)
{
    u_char                      *p;
    ngx_shinsei_mail_drainer_t  *d;

    d = m->drainer;

    ngx_shinsei_mail_free_msg(m);

    ngx_memzero(&m->mark, sizeof(ngx_shinsei_pg_query_t));

    m->params[0] = (char *) m->id.data;
    m->params[1] = (char *) m->claim.data;
    m->mark.values = m->params;
    m->mark.done = ngx_shinsei_mail_marked;
    m->mark.data = m;
    m->mark.log = d->log;

    if (error == NULL) {
        m->mark.stmt = &ngx_shinsei_mail_sent_stmt;
        m->mark.nparams = 2;

    } else {
        p = ngx_pnalloc(d->pool, 3 * NGX_INT_T_LEN + 3);
        if (p == NULL) {
            ngx_shinsei_mail_marked(&m->mark);
            return;
        }

        m->params[5] = m->params[1];
        m->params[1] = error;
        m->params[2] = (char *) p;
        p = ngx_sprintf(p, "%M", d->smcf->smtp.retry / 1000);
        *p++ = '\0';
        m->params[3] = (char *) p;
        p = ngx_sprintf(p, "%ui", d->smcf->smtp.attempts);
        *p = '\0';
        m->params[4] = permanent ? "t" : "f";

        m->mark.stmt = &ngx_shinsei_mail_failed_stmt;
        m->mark.nparams = 6;
    }

    ngx_shinsei_pg_send(&m->mark);
}


static void
ngx_shinsei_mail_marked(ngx_shinsei_pg_query_t *q)
{
    ngx_shinsei_mail_msg_t      *m;
    ngx_shinsei_mail_drainer_t  *d;

    m = q->data;
    d = m->drainer;

    if (q->status != NGX_SHINSEI_PG_OK) {
        /* the lease runs out and the mail is taken again: not lost */
        ngx_shinsei_pg_log_failure(q, NGX_LOG_ERR, "recording a mail's "
                                   "outcome");
        d->failures++;

        ngx_log_error(NGX_LOG_WARN, d->log, 0,
                      ngx_shinsei_log_prefix "mail %V: its outcome could "
                      "not be recorded; it is tried again after its lease",
                      &m->id);

    } else if (PQntuples(q->result) == 1
               && ngx_strcmp(PQgetvalue(q->result, 0, 0), "dead") == 0)
    {
        /* the operator's signal: see docs/operations.md */
        ngx_log_error(NGX_LOG_ERR, d->log, 0,
                      ngx_shinsei_log_prefix "mail %V is dead after %s "
                      "attempts: %s", &m->id, PQgetvalue(q->result, 0, 1),
                      m->params[1]);
    }

    if (--d->outstanding == 0) {
        ngx_shinsei_mail_batch_done(d);
    }
}


static void
ngx_shinsei_mail_batch_done(ngx_shinsei_mail_drainer_t *d)
{
    ngx_uint_t  again;

    again = d->again;

    ngx_destroy_pool(d->pool);
    d->pool = NULL;
    d->busy = 0;
    d->again = 0;
    d->msgs = NULL;
    d->nmsgs = 0;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (again) {
        ngx_shinsei_mail_wake(NULL, NULL, d);
        return;
    }

    ngx_add_timer(&d->timer, NGX_SHINSEI_MAIL_POLL);
}


static void
ngx_shinsei_mail_free_msg(ngx_shinsei_mail_msg_t *m)
{
    ngx_shinsei_smtp_cancel(&m->smtp);
}
