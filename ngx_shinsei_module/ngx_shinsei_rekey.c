
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Re-encryption after a data key rotation (REQ N-SEC-1, docs/operations.md
 * 4.3).  The last "key" line of shinsei_data_keys encrypts; every line
 * decrypts.  When the operator adds a key and reloads, worker 0 of the new
 * generation (10 s after it starts, or shinsei_purge_interval if shorter)
 * walks every encrypted value (sql/006_rekey.sql names them)
 * and writes each value that is under an older key again under the new
 * one, a batch at a time, in id order.  A value is replaced only where it
 * is still what was read, so a resident's change made meanwhile wins.
 * The walk is repeated every shinsei_purge_interval: values written by the
 * previous generation's workers during the reload are caught there.  Once
 * a pass finds nothing under an older key, the old key line may go.
 *
 * The work is AES-GCM on short strings, microseconds a value, so it runs
 * on the event loop; a batch of 100 is well under a millisecond.
 */


#include "ngx_shinsei_rekey.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_pg.h"
#include "ngx_shinsei_string.h"


#define NGX_SHINSEI_REKEY_BATCH  100
/*
 * The first pass waits until the previous generation's workers, which do
 * not have the new key, have finished the requests they were serving.
 */
#define NGX_SHINSEI_REKEY_START  10000


typedef struct {
    ngx_shinsei_main_conf_t   *smcf;
    ngx_log_t                 *log;
    ngx_event_t                timer;
    ngx_pool_t                *pool;
    ngx_shinsei_pg_query_t     query;
    const char                *params[4];
    u_char                     batch[NGX_INT_T_LEN + 1];
    u_char                     after[NGX_INT64_LEN + 1];
    char                      *rows;            /* cJSON's, for apply */
    ngx_uint_t                 target;
    ngx_uint_t                 full;            /* the batch was full */
    ngx_uint_t                 replaced;        /* in this pass */
    ngx_uint_t                 failed;          /* in this pass */
    ngx_uint_t                 failures;        /* queries, all told */
    unsigned                   busy:1;
} ngx_shinsei_rekey_t;


static void ngx_shinsei_rekey_tick(ngx_event_t *ev);
static void ngx_shinsei_rekey_read(ngx_shinsei_rekey_t *rk);
static void ngx_shinsei_rekey_send(ngx_shinsei_rekey_t *rk,
    ngx_shinsei_pg_stmt_t *stmt, int nparams, ngx_shinsei_pg_done_pt done);
static void ngx_shinsei_rekey_got(ngx_shinsei_pg_query_t *q);
static void ngx_shinsei_rekey_applied(ngx_shinsei_pg_query_t *q);
static void ngx_shinsei_rekey_next(ngx_shinsei_rekey_t *rk);
static void ngx_shinsei_rekey_free(ngx_shinsei_rekey_t *rk);


/* every encrypted value, as sql/006_rekey.sql names them */

static const char  *ngx_shinsei_rekey_targets[] = {
    "citizens.email_enc",
    "citizens.name_enc",
    "citizens.name_kana_enc",
    "outbox.recipient_enc",
    "outbox.body_enc",
    "tokens.email_enc",
    NULL
};


static ngx_shinsei_pg_stmt_t  ngx_shinsei_rekey_batch_stmt =
    ngx_shinsei_pg_stmt(
    "SELECT id, aad, value FROM rekey_batch($1, $2, $3::bigint, $4::int)");

static ngx_shinsei_pg_stmt_t  ngx_shinsei_rekey_apply_stmt =
    ngx_shinsei_pg_stmt("SELECT rekey_apply($1, $2::json)");


static ngx_shinsei_rekey_t  *ngx_shinsei_rekey;
static ngx_connection_t      ngx_shinsei_rekey_dummy;


ngx_int_t
ngx_shinsei_rekey_init_process(ngx_cycle_t *cycle,
    ngx_shinsei_main_conf_t *smcf)
{
    ngx_shinsei_rekey_t  *rk;

    /* one worker walks the tables; its replacement after a crash too */

    if (ngx_process == NGX_PROCESS_WORKER && ngx_worker != 0) {
        return NGX_OK;
    }

    rk = ngx_pcalloc(cycle->pool, sizeof(ngx_shinsei_rekey_t));
    if (rk == NULL) {
        return NGX_ERROR;
    }

    rk->smcf = smcf;
    rk->log = cycle->log;

    ngx_shinsei_rekey_dummy.fd = (ngx_socket_t) -1;

    rk->timer.handler = ngx_shinsei_rekey_tick;
    rk->timer.data = &ngx_shinsei_rekey_dummy;
    rk->timer.log = cycle->log;
    rk->timer.cancelable = 1;

    ngx_shinsei_rekey = rk;

    ngx_add_timer(&rk->timer, ngx_min(NGX_SHINSEI_REKEY_START,
                                      smcf->purge_interval));

    return NGX_OK;
}


ngx_uint_t
ngx_shinsei_rekey_failures(void)
{
    return ngx_shinsei_rekey ? ngx_shinsei_rekey->failures : 0;
}


void
ngx_shinsei_rekey_exit_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_rekey_t  *rk;

    rk = ngx_shinsei_rekey;

    if (rk == NULL) {
        return;
    }

    if (rk->timer.timer_set) {
        ngx_del_timer(&rk->timer);
    }

    if (rk->busy) {
        ngx_shinsei_pg_cancel(&rk->query);
    }

    ngx_shinsei_rekey_free(rk);
    ngx_shinsei_rekey = NULL;
}


static void
ngx_shinsei_rekey_tick(ngx_event_t *ev)
{
    ngx_shinsei_rekey_t  *rk;

    rk = ngx_shinsei_rekey;

    if (rk == NULL || rk->busy || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    /* a new pass */

    rk->target = 0;
    rk->replaced = 0;
    rk->failed = 0;
    ngx_cpystrn(rk->after, (u_char *) "0", sizeof(rk->after));

    ngx_shinsei_rekey_read(rk);
}


static void
ngx_shinsei_rekey_read(ngx_shinsei_rekey_t *rk)
{
    ngx_str_t  id;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_shinsei_crypto_current_key(&id);

    rk->pool = ngx_create_pool(4096, rk->log);
    if (rk->pool == NULL) {
        ngx_add_timer(&rk->timer, rk->smcf->purge_interval);
        return;
    }

    rk->params[0] = ngx_shinsei_rekey_targets[rk->target];
    rk->params[1] = ngx_shinsei_string_cstr(rk->pool, &id);
    rk->params[2] = (char *) rk->after;

    ngx_sprintf(rk->batch, "%d%Z", NGX_SHINSEI_REKEY_BATCH);
    rk->params[3] = (char *) rk->batch;

    if (rk->params[1] == NULL) {
        ngx_shinsei_rekey_free(rk);
        ngx_add_timer(&rk->timer, rk->smcf->purge_interval);
        return;
    }

    ngx_shinsei_rekey_send(rk, &ngx_shinsei_rekey_batch_stmt, 4,
                           ngx_shinsei_rekey_got);
}


/* rk->params hold the values; done() may send the next query on rk */

static void
ngx_shinsei_rekey_send(ngx_shinsei_rekey_t *rk, ngx_shinsei_pg_stmt_t *stmt,
    int nparams, ngx_shinsei_pg_done_pt done)
{
    ngx_memzero(&rk->query, sizeof(ngx_shinsei_pg_query_t));
    rk->query.stmt = stmt;
    rk->query.nparams = nparams;
    rk->query.values = rk->params;
    rk->query.done = done;
    rk->query.data = rk;
    rk->query.log = rk->log;

    rk->busy = 1;

    ngx_shinsei_pg_send(&rk->query);
}


static void
ngx_shinsei_rekey_got(ngx_shinsei_pg_query_t *q)
{
    int                   i, n;
    char                 *value;
    cJSON                *rows, *row;
    ngx_str_t             old, plain, fresh;
    ngx_shinsei_rekey_t  *rk;

    rk = q->data;
    rk->busy = 0;

    if (q->status != NGX_SHINSEI_PG_OK) {
        /* the next pass starts over */
        ngx_shinsei_pg_log_failure(q, NGX_LOG_ERR,
                                   "reading a re-encryption batch");
        rk->failures++;
        ngx_shinsei_rekey_free(rk);
        ngx_add_timer(&rk->timer, rk->smcf->purge_interval);
        return;
    }

    n = PQntuples(q->result);
    rk->full = (n == NGX_SHINSEI_REKEY_BATCH);

    if (n == 0) {
        ngx_shinsei_rekey_next(rk);
        return;
    }

    rows = cJSON_CreateArray();
    if (rows == NULL) {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        old.data = (u_char *) PQgetvalue(q->result, i, 2);
        old.len = PQgetlength(q->result, i, 2);

        if (ngx_shinsei_crypto_decrypt(rk->pool, &old,
                                       PQgetvalue(q->result, i, 1), &plain)
            != NGX_OK)
        {
            /* an unknown key id or a damaged value: counted, left alone */
            rk->failed++;
            continue;
        }

        if (ngx_shinsei_crypto_encrypt(rk->pool, &plain,
                                       PQgetvalue(q->result, i, 1), &fresh)
            != NGX_OK)
        {
            ngx_explicit_memzero(plain.data, plain.len);
            cJSON_Delete(rows);
            goto failed;
        }

        ngx_explicit_memzero(plain.data, plain.len);

        value = ngx_shinsei_string_cstr(rk->pool, &fresh);
        row = cJSON_CreateObject();

        /* the row joins the array last: until then it is ours to free */

        if (value == NULL || row == NULL
            || cJSON_AddRawToObject(row, "id", PQgetvalue(q->result, i, 0))
               == NULL
            || cJSON_AddStringToObject(row, "old", (char *) old.data) == NULL
            || cJSON_AddStringToObject(row, "new", value) == NULL
            || !cJSON_AddItemToArray(rows, row))
        {
            cJSON_Delete(row);
            cJSON_Delete(rows);
            goto failed;
        }
    }

    /* the walk goes on after the last id read, decrypted or not */

    ngx_cpystrn(rk->after, (u_char *) PQgetvalue(q->result, n - 1, 0),
                sizeof(rk->after));

    if (cJSON_GetArraySize(rows) == 0) {
        cJSON_Delete(rows);
        ngx_shinsei_rekey_next(rk);
        return;
    }

    rk->rows = cJSON_PrintUnformatted(rows);
    cJSON_Delete(rows);

    if (rk->rows == NULL) {
        goto failed;
    }

    rk->params[1] = rk->rows;

    ngx_shinsei_rekey_send(rk, &ngx_shinsei_rekey_apply_stmt, 2,
                           ngx_shinsei_rekey_applied);
    return;

failed:

    ngx_log_error(NGX_LOG_ERR, rk->log, 0,
                  ngx_shinsei_log_prefix "re-encryption stopped: "
                  "out of memory");
    ngx_shinsei_rekey_free(rk);
    ngx_add_timer(&rk->timer, rk->smcf->purge_interval);
}


static void
ngx_shinsei_rekey_applied(ngx_shinsei_pg_query_t *q)
{
    ngx_int_t             n;
    ngx_shinsei_rekey_t  *rk;

    rk = q->data;
    rk->busy = 0;

    if (q->status != NGX_SHINSEI_PG_OK || PQntuples(q->result) != 1) {
        ngx_shinsei_pg_log_failure(q, NGX_LOG_ERR,
                                   "writing a re-encryption batch");
        rk->failures++;
        ngx_shinsei_rekey_free(rk);
        ngx_add_timer(&rk->timer, rk->smcf->purge_interval);
        return;
    }

    n = ngx_atoi((u_char *) PQgetvalue(q->result, 0, 0),
                 PQgetlength(q->result, 0, 0));

    if (n > 0) {
        rk->replaced += n;
    }

    ngx_shinsei_rekey_next(rk);
}


/* after a batch: the next batch, the next target, or the end of a pass */

static void
ngx_shinsei_rekey_next(ngx_shinsei_rekey_t *rk)
{
    ngx_str_t  id;

    ngx_shinsei_rekey_free(rk);

    if (!rk->full) {
        rk->target++;
        ngx_cpystrn(rk->after, (u_char *) "0", sizeof(rk->after));
    }

    if (ngx_shinsei_rekey_targets[rk->target] != NULL) {
        ngx_shinsei_rekey_read(rk);
        return;
    }

    ngx_shinsei_crypto_current_key(&id);

    if (rk->replaced) {
        ngx_log_error(NGX_LOG_NOTICE, rk->log, 0,
                      ngx_shinsei_log_prefix "re-encrypted %ui values "
                      "under the data key \"%V\"", rk->replaced, &id);
    }

    if (rk->failed) {
        ngx_log_error(NGX_LOG_ERR, rk->log, 0,
                      ngx_shinsei_log_prefix "re-encryption left values "
                      "it cannot decrypt (wrong or missing data key, "
                      "damaged, or not their row's value): %ui",
                      rk->failed);
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(&rk->timer, rk->smcf->purge_interval);
    }
}


static void
ngx_shinsei_rekey_free(ngx_shinsei_rekey_t *rk)
{
    if (rk->rows) {
        cJSON_free(rk->rows);
        rk->rows = NULL;
    }

    if (rk->pool) {
        ngx_destroy_pool(rk->pool);
        rk->pool = NULL;
    }
}
