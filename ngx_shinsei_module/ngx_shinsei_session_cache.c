
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The session cache: live sessions in a shared-memory zone, one per
 * nginx (shinsei_session_cache), looked up by the SHA-256 of the ID (a
 * red-black tree, oldest last in a queue), so that a logged-in page costs
 * no query.  PostgreSQL stays the truth (ngx_shinsei_session.c says how
 * the session step uses it):
 *
 * - an entry lives at most ttl (60 s at most);
 * - a session forgotten (logout, a password change, NOTIFY
 *   shinsei_session from any node, sql/008) is removed at once, and a
 *   miss that was reading the table meanwhile keeps nothing: it could
 *   have read that very session;
 * - nothing is served or kept while this worker's LISTEN connection is
 *   down, and the zone is emptied (a new generation) when it comes back,
 *   since whatever was notified meanwhile is unknown.
 */


#include "ngx_shinsei_session_cache.h"
#include "ngx_shinsei_pg.h"


#define NGX_SHINSEI_SESSION_TTL_MAX    60000
#define NGX_SHINSEI_SESSION_PROFILE    2048     /* bytes kept, at most */
#define NGX_SHINSEI_SESSION_CITY       32


typedef struct {
    ngx_rbtree_node_t          node;     /* key: the hash's first bytes */
    ngx_queue_t                queue;
    u_char                     hash[32];
    ngx_uint_t                 gen;
    ngx_msec_t                 stored;
    time_t                     created;
    time_t                     seen;
    int64_t                    user_id;
    ngx_uint_t                 level;
    ngx_uint_t                 kind;
    u_char                     city[NGX_SHINSEI_SESSION_CITY];
    size_t                     city_len;
    size_t                     profile_len;
    u_char                     profile[1];
} ngx_shinsei_session_node_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;    /* the most recently used first */
    ngx_uint_t                 gen;      /* an emptied zone: gen + 1 */
    ngx_uint_t                 changes;  /* sessions forgotten, all told */
    ngx_uint_t                 entries;
    ngx_uint_t                 hits;
    ngx_uint_t                 misses;
    ngx_uint_t                 forgotten;
    ngx_uint_t                 flushes;
} ngx_shinsei_session_sh_t;


typedef struct {
    ngx_shinsei_session_sh_t  *sh;
    ngx_slab_pool_t           *shpool;
    size_t                     size;
} ngx_shinsei_session_cache_t;


static ngx_int_t ngx_shinsei_session_cache_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static ngx_shinsei_session_node_t *ngx_shinsei_session_cache_lookup(
    ngx_shinsei_session_sh_t *sh, u_char *hash);
static void ngx_shinsei_session_cache_delete(
    ngx_shinsei_session_cache_t *cache, ngx_shinsei_session_node_t *sn);
static void ngx_shinsei_session_cache_notify(ngx_str_t *channel,
    ngx_str_t *payload, void *data);
static void ngx_shinsei_session_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);


static ngx_shm_zone_t  *ngx_shinsei_session_zone;
static ngx_msec_t       ngx_shinsei_session_ttl;


/*
 * shinsei_session_cache size [ttl=60s];
 */

char *
ngx_shinsei_session_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    ssize_t                       size;
    ngx_str_t                    *value, s, name;
    ngx_msec_t                    ttl;
    ngx_uint_t                    i;
    ngx_shinsei_session_cache_t  *cache;

    if (smcf->session_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_session_cache\": \"%V\" is not a size "
                           "of at least %uz", &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    ttl = NGX_SHINSEI_SESSION_TTL_MAX;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 0);

            if (ttl != (ngx_msec_t) NGX_ERROR && ttl > 0
                && ttl <= NGX_SHINSEI_SESSION_TTL_MAX)
            {
                continue;
            }
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_session_cache\": invalid parameter "
                           "\"%V\" (ttl= at most 60s)", &value[i]);
        return NGX_CONF_ERROR;
    }

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_session_cache_t));
    if (cache == NULL) {
        return NGX_CONF_ERROR;
    }

    cache->size = size;

    ngx_str_set(&name, "shinsei_sessions");

    smcf->session_zone = ngx_shared_memory_add(cf, &name, size,
                                               &ngx_shinsei_module);
    if (smcf->session_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    smcf->session_zone->init = ngx_shinsei_session_cache_init_zone;
    smcf->session_zone->data = cache;
    smcf->session_ttl = ttl;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_shinsei_session_cache_init_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_shinsei_module);

    ngx_shinsei_session_zone = smcf->session_zone;
    ngx_shinsei_session_ttl = smcf->session_ttl;

    if (ngx_shinsei_session_zone == NULL) {
        return NGX_OK;
    }

    return ngx_shinsei_pg_listen(cycle, "shinsei_session",
                                 ngx_shinsei_session_cache_notify, NULL);
}


ngx_int_t
ngx_shinsei_session_cache_get_stats(ngx_shinsei_session_cache_stats_t *st)
{
    ngx_shinsei_session_sh_t     *sh;
    ngx_shinsei_session_cache_t  *cache;

    if (ngx_shinsei_session_zone == NULL) {
        return NGX_DECLINED;
    }

    cache = ngx_shinsei_session_zone->data;
    sh = cache->sh;

    ngx_shmtx_lock(&cache->shpool->mutex);

    st->size = cache->size;
    st->entries = sh->entries;
    st->hits = sh->hits;
    st->misses = sh->misses;
    st->forgotten = sh->forgotten;
    st->flushes = sh->flushes;

    ngx_shmtx_unlock(&cache->shpool->mutex);

    st->serving = ngx_shinsei_pg_listening();

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_session_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_shinsei_session_cache_t  *ocache = data;

    size_t                        len;
    ngx_shinsei_session_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        /* a reload: the new workers share what the old ones kept */
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_shinsei_session_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_memzero(cache->sh, sizeof(ngx_shinsei_session_sh_t));

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_shinsei_session_rbtree_insert);
    ngx_queue_init(&cache->sh->queue);

    len = sizeof(" in shinsei session cache \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in shinsei session cache \"%V\"%Z",
                &shm_zone->shm.name);

    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * NGX_OK: the session of ss->hash is live, of this kind and city, and
 * ss holds it (its profile copied into pool).
 */

ngx_int_t
ngx_shinsei_session_cache_get(ngx_pool_t *pool, ngx_shinsei_session_t *ss,
    ngx_uint_t kind, ngx_str_t *city, time_t idle, time_t absolute)
{
    time_t                        now;
    ngx_shinsei_session_sh_t     *sh;
    ngx_shinsei_session_node_t   *sn;
    ngx_shinsei_session_cache_t  *cache;

    if (ngx_shinsei_session_zone == NULL) {
        return NGX_DECLINED;
    }

    cache = ngx_shinsei_session_zone->data;
    sh = cache->sh;
    now = ngx_time();

    ngx_shmtx_lock(&cache->shpool->mutex);

    if (!ngx_shinsei_pg_listening()) {
        /* a change may have been missed: the table answers */
        goto miss;
    }


    sn = ngx_shinsei_session_cache_lookup(sh, ss->hash);

    if (sn == NULL) {
        goto miss;
    }

    if (sn->gen != sh->gen
        || (ngx_msec_int_t) (ngx_current_msec - sn->stored)
           >= (ngx_msec_int_t) ngx_shinsei_session_ttl
        || now - sn->seen >= idle
        || now - sn->created >= absolute)
    {
        /* emptied, too old, or timed out: the table decides */
        ngx_shinsei_session_cache_delete(cache, sn);
        goto miss;
    }

    if (sn->kind != kind || sn->city_len != city->len
        || ngx_strncmp(sn->city, city->data, city->len) != 0)
    {
        goto miss;
    }

    ss->profile.len = sn->profile_len;
    ss->profile.data = ngx_pnalloc(pool, sn->profile_len + 1);

    if (ss->profile.data == NULL) {
        goto miss;
    }

    ngx_memcpy(ss->profile.data, sn->profile, sn->profile_len);
    ss->profile.data[sn->profile_len] = '\0';

    ss->user_id = sn->user_id;
    ss->level = sn->level;
    ss->created = sn->created;
    ss->seen = now;
    ss->valid = 1;

    sn->seen = now;

    ngx_queue_remove(&sn->queue);
    ngx_queue_insert_head(&sh->queue, &sn->queue);

    sh->hits++;

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return NGX_OK;

miss:

    sh->misses++;

    /* a session forgotten from here on may be the one about to be read */
    ss->changes = sh->changes;

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return NGX_DECLINED;
}


void
ngx_shinsei_session_cache_put(ngx_shinsei_session_t *ss, ngx_uint_t kind,
    ngx_str_t *city)
{
    size_t                        size;
    ngx_uint_t                    i;
    ngx_queue_t                  *q;
    ngx_shinsei_session_sh_t     *sh;
    ngx_shinsei_session_node_t   *sn, *old;
    ngx_shinsei_session_cache_t  *cache;

    if (ngx_shinsei_session_zone == NULL || !ngx_shinsei_pg_listening()
        || !ss->valid || ss->profile.len > NGX_SHINSEI_SESSION_PROFILE
        || city->len > NGX_SHINSEI_SESSION_CITY)
    {
        return;
    }

    cache = ngx_shinsei_session_zone->data;
    sh = cache->sh;

    size = offsetof(ngx_shinsei_session_node_t, profile) + ss->profile.len;

    ngx_shmtx_lock(&cache->shpool->mutex);

    if (sh->changes != ss->changes && !ss->created_now) {
        /* a session was forgotten while this one was read: not kept */
        goto done;
    }

    old = ngx_shinsei_session_cache_lookup(sh, ss->hash);
    if (old) {
        ngx_shinsei_session_cache_delete(cache, old);
    }

    /* the oldest entries past their time make room first */

    for (i = 0; i < 3 && !ngx_queue_empty(&sh->queue); i++) {
        q = ngx_queue_last(&sh->queue);
        old = ngx_queue_data(q, ngx_shinsei_session_node_t, queue);

        if (old->gen == sh->gen
            && (ngx_msec_int_t) (ngx_current_msec - old->stored)
               < (ngx_msec_int_t) ngx_shinsei_session_ttl)
        {
            break;
        }

        ngx_shinsei_session_cache_delete(cache, old);
    }

    sn = ngx_slab_alloc_locked(cache->shpool, size);

    /* full: the least recently used go */

    for (i = 0; sn == NULL && i < 16 && !ngx_queue_empty(&sh->queue); i++) {
        q = ngx_queue_last(&sh->queue);
        old = ngx_queue_data(q, ngx_shinsei_session_node_t, queue);
        ngx_shinsei_session_cache_delete(cache, old);

        sn = ngx_slab_alloc_locked(cache->shpool, size);
    }

    if (sn == NULL) {
        goto done;
    }

    ngx_memcpy(sn->hash, ss->hash, 32);
    sn->node.key = ((ngx_rbtree_key_t) ss->hash[0] << 24)
                   | ((ngx_rbtree_key_t) ss->hash[1] << 16)
                   | ((ngx_rbtree_key_t) ss->hash[2] << 8)
                   | (ngx_rbtree_key_t) ss->hash[3];
    sn->gen = sh->gen;
    sn->stored = ngx_current_msec;
    sn->created = ss->created;
    sn->seen = ss->seen;
    sn->user_id = ss->user_id;
    sn->level = ss->level;
    sn->kind = kind;
    sn->city_len = city->len;
    ngx_memcpy(sn->city, city->data, city->len);
    sn->profile_len = ss->profile.len;

    if (ss->profile.len) {
        ngx_memcpy(sn->profile, ss->profile.data, ss->profile.len);
    }

    ngx_rbtree_insert(&sh->rbtree, &sn->node);
    ngx_queue_insert_head(&sh->queue, &sn->queue);
    sh->entries++;

done:

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


static ngx_shinsei_session_node_t *
ngx_shinsei_session_cache_lookup(ngx_shinsei_session_sh_t *sh, u_char *hash)
{
    ngx_int_t                    rc;
    ngx_rbtree_key_t             key;
    ngx_rbtree_node_t           *node, *sentinel;
    ngx_shinsei_session_node_t  *sn;

    key = ((ngx_rbtree_key_t) hash[0] << 24)
          | ((ngx_rbtree_key_t) hash[1] << 16)
          | ((ngx_rbtree_key_t) hash[2] << 8) | (ngx_rbtree_key_t) hash[3];

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        sn = (ngx_shinsei_session_node_t *) node;

        rc = ngx_memcmp(hash, sn->hash, 32);

        if (rc == 0) {
            return sn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_shinsei_session_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_shinsei_session_node_t  *sn, *snt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            sn = (ngx_shinsei_session_node_t *) node;
            snt = (ngx_shinsei_session_node_t *) temp;

            p = (ngx_memcmp(sn->hash, snt->hash, 32) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* with the zone locked */

static void
ngx_shinsei_session_cache_delete(ngx_shinsei_session_cache_t *cache,
    ngx_shinsei_session_node_t *sn)
{
    ngx_queue_remove(&sn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, &sn->node);
    ngx_slab_free_locked(cache->shpool, sn);
    cache->sh->entries--;
}


void
ngx_shinsei_session_cache_forget(u_char *hash)
{
    ngx_shinsei_session_sh_t     *sh;
    ngx_shinsei_session_node_t   *sn;
    ngx_shinsei_session_cache_t  *cache;

    if (ngx_shinsei_session_zone == NULL) {
        return;
    }

    cache = ngx_shinsei_session_zone->data;
    sh = cache->sh;

    ngx_shmtx_lock(&cache->shpool->mutex);

    sh->changes++;

    sn = ngx_shinsei_session_cache_lookup(sh, hash);

    if (sn) {
        ngx_shinsei_session_cache_delete(cache, sn);
        sh->forgotten++;
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/*
 * NOTIFY shinsei_session: hashes to forget, in hex, separated by spaces.
 * No payload: the LISTEN connection is (back) up, and what was notified
 * while it was down is unknown, so the zone is emptied.
 */

static void
ngx_shinsei_session_cache_notify(ngx_str_t *channel, ngx_str_t *payload,
    void *data)
{
    ngx_shinsei_session_sh_t     *sh;
    ngx_shinsei_session_cache_t  *cache;

    cache = ngx_shinsei_session_zone->data;
    sh = cache->sh;

    if (payload == NULL || payload->len < 64) {
        ngx_shmtx_lock(&cache->shpool->mutex);
        sh->gen++;
        sh->changes++;
        sh->flushes++;
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return;
    }

    ngx_shinsei_session_cache_forget_hex(payload->data,
                                         payload->data + payload->len);
}


/* hashes in hex, separated by spaces */

void
ngx_shinsei_session_cache_forget_hex(u_char *p, u_char *last)
{
    u_char      hash[32];
    ngx_int_t   n;
    ngx_uint_t  i;

    while (last - p >= 64) {

        for (i = 0; i < 32; i++) {
            n = ngx_hextoi(p + 2 * i, 2);
            if (n == NGX_ERROR) {
                return;
            }

            hash[i] = (u_char) n;
        }

        ngx_shinsei_session_cache_forget(hash);

        p += 64;

        while (p < last && *p == ' ') {
            p++;
        }
    }
}
