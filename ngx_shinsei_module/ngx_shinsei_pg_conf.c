
/*
 * Copyright (C) ngx_shinsei developers
 *
 * shinsei_db "conninfo" [pool=8] [queue=1024] [connect_timeout=5s]
 *            [query_timeout=10s] [queue_timeout=5s];
 *
 * The connection string is split at configuration load into one string
 * per host, so that each host gets its own connect timeout (libpq leaves
 * per-host timeouts of PQconnectPoll() to the application), and refused
 * if a host is a name libpq would resolve with a blocking lookup inside a
 * worker.  Each string carries the server-side timeouts: statement_timeout,
 * lock_timeout and idle_in_transaction_session_timeout are the query
 * timeout, so a statement the module gave up on is rolled back on the
 * server too.  "shinsei.aad=row" tells sql/013's triggers that this
 * client binds what it encrypts to the row (any other writer's values are
 * marked as of the first format).  An "options" of the operator's own
 * comes after them, and wins.
 */


#include "ngx_shinsei_pg.h"


static char *ngx_shinsei_pg_conf_hosts(ngx_conf_t *cf,
    ngx_shinsei_db_conf_t *db, PQconninfoOption *opts);
static char *ngx_shinsei_pg_conf_split(ngx_conf_t *cf, const char *list,
    ngx_array_t *out);
static u_char *ngx_shinsei_pg_conf_quote(u_char *p, const char *keyword,
    ngx_str_t *value);


char *
ngx_shinsei_pg_conf_db(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    char               *err, *rv;
    ngx_int_t           n;
    ngx_str_t          *value, s;
    ngx_uint_t          i;
    ngx_msec_t          ms, *target;
    PQconninfoOption   *opts;

    if (smcf->db.conninfo.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0
            || ngx_strncmp(value[i].data, "queue=", 6) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_atoi(s.data, s.len);

            if (n <= 0 || n > 65535) {
                goto invalid;
            }

            if (value[i].data[1] == 'o') {
                smcf->db.pool_size = n;

            } else {
                smcf->db.queue_size = n;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            target = &smcf->db.connect_timeout;
            s.data = value[i].data + 16;

        } else if (ngx_strncmp(value[i].data, "query_timeout=", 14) == 0) {
            target = &smcf->db.query_timeout;
            s.data = value[i].data + 14;

        } else if (ngx_strncmp(value[i].data, "queue_timeout=", 14) == 0) {
            target = &smcf->db.queue_timeout;
            s.data = value[i].data + 14;

        } else {
            goto invalid;
        }

        s.len = value[i].data + value[i].len - s.data;

        ms = ngx_parse_time(&s, 0);

        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        *target = ms;
    }

    ngx_conf_init_uint_value(smcf->db.pool_size, 8);
    ngx_conf_init_uint_value(smcf->db.queue_size, 1024);
    ngx_conf_init_msec_value(smcf->db.connect_timeout, 5000);
    ngx_conf_init_msec_value(smcf->db.query_timeout, 10000);
    ngx_conf_init_msec_value(smcf->db.queue_timeout, 5000);

    err = NULL;
    opts = PQconninfoParse((char *) value[1].data, &err);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_db\": invalid connection string: %s",
                           err ? err : "out of memory");
        PQfreemem(err);
        return NGX_CONF_ERROR;
    }

    smcf->db.conninfo = value[1];

    rv = ngx_shinsei_pg_conf_hosts(cf, &smcf->db, opts);

    PQconninfoFree(opts);

    return rv;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_db\": invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


static char *
ngx_shinsei_pg_conf_hosts(ngx_conf_t *cf, ngx_shinsei_db_conf_t *db,
    PQconninfoOption *opts)
{
    u_char            *p, addr[16];
    size_t             len;
    ngx_str_t         *h, *a, *pt, *out, value, options, name;
    ngx_uint_t         i, n;
    ngx_array_t        hosts, addrs, ports;
    PQconninfoOption  *o, *own;

    if (ngx_array_init(&hosts, cf->temp_pool, 4, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&addrs, cf->temp_pool, 4, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&ports, cf->temp_pool, 4, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "ngx_shinsei");
    own = NULL;
    len = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        if (ngx_strcmp(o->keyword, "host") == 0) {
            if (ngx_shinsei_pg_conf_split(cf, o->val, &hosts) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            if (ngx_shinsei_pg_conf_split(cf, o->val, &addrs) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            if (ngx_shinsei_pg_conf_split(cf, o->val, &ports) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strcmp(o->keyword, "options") == 0) {
            own = o;

        } else if (ngx_strcmp(o->keyword, "application_name") == 0) {
            name.len = 0;
        }

        len += ngx_strlen(o->keyword) + 2 * ngx_strlen(o->val) + 4;
    }

    /* the server's own timeouts first: the operator's options win */

    options.data = ngx_pnalloc(cf->temp_pool, 3 * NGX_INT_T_LEN + 160
                               + (own ? ngx_strlen(own->val) : 0));
    if (options.data == NULL) {
        return NGX_CONF_ERROR;
    }

    options.len = ngx_sprintf(options.data, "-c statement_timeout=%M "
                              "-c lock_timeout=%M "
                              "-c idle_in_transaction_session_timeout=%M "
                              "-c shinsei.aad=row%s%s",
                              db->query_timeout, db->query_timeout,
                              db->query_timeout, own ? " " : "",
                              own ? own->val : "")
                  - options.data;

    len += sizeof("options='' application_name='' ") + 2 * options.len
           + name.len;

    n = ngx_max(ngx_max(hosts.nelts, addrs.nelts), 1);

    if ((hosts.nelts > 1 && addrs.nelts > 1 && hosts.nelts != addrs.nelts)
        || (ports.nelts > 1 && ports.nelts != n))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_db\": host, hostaddr and port lists "
                           "differ in length");
        return NGX_CONF_ERROR;
    }

    h = hosts.elts;
    a = addrs.elts;
    pt = ports.elts;

    for (i = 0; i < hosts.nelts; i++) {

        if ((addrs.nelts > i && a[i].len) || h[i].len == 0
            || h[i].data[0] == '/' || h[i].data[0] == '@')
        {
            continue;
        }

        if (ngx_inet_addr(h[i].data, h[i].len) != INADDR_NONE) {
            continue;
        }

#if (NGX_HAVE_INET6)
        if (ngx_inet6_addr(h[i].data, h[i].len, addr) == NGX_OK) {
            continue;
        }
#endif

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_db\": host \"%V\" is a name that "
                           "libpq would resolve with a blocking lookup in "
                           "the worker: give its address (host=IP, or "
                           "hostaddr=IP beside the name), or a socket "
                           "directory", &h[i]);
        return NGX_CONF_ERROR;
    }

    db->hosts = ngx_array_create(cf->pool, n, sizeof(ngx_str_t));
    if (db->hosts == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < n; i++) {

        out = ngx_array_push(db->hosts);
        if (out == NULL) {
            return NGX_CONF_ERROR;
        }

        out->data = ngx_pnalloc(cf->pool, len + 1);
        if (out->data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_shinsei_pg_conf_quote(out->data, "options", &options);

        if (name.len) {
            p = ngx_shinsei_pg_conf_quote(p, "application_name", &name);
        }

        for (o = opts; o->keyword; o++) {
            if (o->val == NULL || o == own) {
                continue;
            }

            if (ngx_strcmp(o->keyword, "host") == 0) {
                value = hosts.nelts > i ? h[i] : h[0];

            } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
                value = addrs.nelts > i ? a[i] : a[0];

            } else if (ngx_strcmp(o->keyword, "port") == 0) {
                value = ports.nelts > i ? pt[i] : pt[0];

            } else {
                value.data = (u_char *) o->val;
                value.len = ngx_strlen(o->val);
            }

            if (value.len) {
                p = ngx_shinsei_pg_conf_quote(p, o->keyword, &value);
            }
        }

        *p = '\0';
        out->len = p - out->data;
    }

    return NGX_CONF_OK;
}


static char *
ngx_shinsei_pg_conf_split(ngx_conf_t *cf, const char *list, ngx_array_t *out)
{
    u_char     *p, *last, *comma;
    ngx_str_t  *item;

    p = (u_char *) list;
    last = p + ngx_strlen(list);

    for ( ;; ) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        item = ngx_array_push(out);
        if (item == NULL) {
            return NGX_CONF_ERROR;
        }

        item->data = p;
        item->len = comma - p;

        if (comma == last) {
            return NGX_CONF_OK;
        }

        p = comma + 1;
    }
}


/* keyword='value' with \ and ' escaped, as libpq reads them */

static u_char *
ngx_shinsei_pg_conf_quote(u_char *p, const char *keyword, ngx_str_t *value)
{
    u_char  *v;

    p = ngx_sprintf(p, "%s='", keyword);

    for (v = value->data; v < value->data + value->len; v++) {
        if (*v == '\\' || *v == '\'') {
            *p++ = '\\';
        }

        *p++ = *v;
    }

    *p++ = '\'';
    *p++ = ' ';

    return p;
}
