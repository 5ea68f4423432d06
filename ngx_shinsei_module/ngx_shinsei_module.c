
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Directives, configuration structures and the process hooks.
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_pg.h"
#include "ngx_shinsei_citizen_catalogue.h"
#include "ngx_shinsei_purge.h"
#include "ngx_shinsei_rekey.h"
#include "ngx_shinsei_smtp.h"
#include "ngx_shinsei_tenant.h"
#include "ngx_shinsei_tmpl.h"
#include <libpq-fe.h>


static void *ngx_shinsei_create_main_conf(ngx_conf_t *cf);
static char *ngx_shinsei_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_shinsei_create_srv_conf(ngx_conf_t *cf);
static char *ngx_shinsei_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void *ngx_shinsei_create_loc_conf(ngx_conf_t *cf);
static char *ngx_shinsei_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_shinsei_db(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_shinsei_templates(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_session_timeout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_tenant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_app(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_shinsei_data_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_password_kdf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_blocklist(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_smtp(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_site_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_mail_from(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_shinsei_read_small_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *text);
static int ngx_libc_cdecl ngx_shinsei_str_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_shinsei_init_process(ngx_cycle_t *cycle);
static void ngx_shinsei_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_shinsei_commands[] = {

    { ngx_string("shinsei_db"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_shinsei_db,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_templates"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_templates,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_session_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_shinsei_session_timeout,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_purge_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_shinsei_main_conf_t, purge_interval),
      NULL },

    { ngx_string("shinsei_tenant"),
      NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_tenant,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_insecure_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_shinsei_srv_conf_t, insecure_cookie),
      NULL },

    { ngx_string("shinsei_app"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_app,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_data_keys"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_data_keys,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_password_kdf"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_shinsei_password_kdf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_password_blocklist"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_blocklist,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_shinsei_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("shinsei_smtp"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_shinsei_smtp,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_site_url"),
      NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_site_url,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_mail_from"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_mail_from,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_body_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_shinsei_loc_conf_t, body_limit),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_shinsei_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_shinsei_create_main_conf,          /* create main configuration */
    ngx_shinsei_init_main_conf,            /* init main configuration */

    ngx_shinsei_create_srv_conf,           /* create server configuration */
    ngx_shinsei_merge_srv_conf,            /* merge server configuration */

    ngx_shinsei_create_loc_conf,           /* create location configuration */
    ngx_shinsei_merge_loc_conf             /* merge location configuration */
};


ngx_module_t  ngx_shinsei_module = {
    NGX_MODULE_V1,
    &ngx_shinsei_module_ctx,               /* module context */
    ngx_shinsei_commands,                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_shinsei_init_process,              /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_shinsei_exit_process,              /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_shinsei_create_main_conf(ngx_conf_t *cf)
{
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->db.conninfo = { 0, NULL };
     *     smcf->templates = NULL;
     *     smcf->used = 0;
     */

    smcf->db.pool_size = NGX_CONF_UNSET_UINT;
    smcf->db.queue_size = NGX_CONF_UNSET_UINT;
    smcf->db.connect_timeout = NGX_CONF_UNSET_MSEC;
    smcf->db.query_timeout = NGX_CONF_UNSET_MSEC;
    smcf->db.queue_timeout = NGX_CONF_UNSET_MSEC;
    smcf->session_idle = NGX_CONF_UNSET;
    smcf->session_absolute = NGX_CONF_UNSET;
    smcf->kdf.ln = NGX_CONF_UNSET_UINT;
    smcf->purge_interval = NGX_CONF_UNSET_MSEC;
    smcf->smtp.timeout = NGX_CONF_UNSET_MSEC;

    if (ngx_array_init(&smcf->tenants, cf->pool, 4,
                       sizeof(ngx_shinsei_tenant_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return smcf;
}


static char *
ngx_shinsei_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_shinsei_main_conf_t  *smcf = conf;

    ngx_conf_init_uint_value(smcf->db.pool_size, 8);
    ngx_conf_init_uint_value(smcf->db.queue_size, 1024);
    ngx_conf_init_msec_value(smcf->db.connect_timeout, 5000);
    ngx_conf_init_msec_value(smcf->db.query_timeout, 10000);
    ngx_conf_init_msec_value(smcf->db.queue_timeout, 5000);

    /* OWASP ASVS 4.0.3 3.3.2: 30 minutes idle, 12 hours in all */
    ngx_conf_init_value(smcf->session_idle, 30 * 60);
    ngx_conf_init_value(smcf->session_absolute, 12 * 60 * 60);

    ngx_conf_init_msec_value(smcf->purge_interval, 600000);

    /* scrypt N = 2^15, r = 8, p = 3: one of OWASP's equivalent choices */

    if (smcf->kdf.ln == NGX_CONF_UNSET_UINT) {
        smcf->kdf.ln = 15;
        smcf->kdf.r = 8;
        smcf->kdf.p = 3;
    }

    if (smcf->smtp.timeout == NGX_CONF_UNSET_MSEC) {
        smcf->smtp.timeout = 10000;
        smcf->smtp.retry = 30000;
        smcf->smtp.attempts = 10;
    }

    if (smcf->used) {
        smcf->thread_pool = ngx_thread_pool_add(cf,
                                                smcf->thread_pool_name.len
                                                ? &smcf->thread_pool_name
                                                : NULL);
        if (smcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_shinsei_create_srv_conf(ngx_conf_t *cf)
{
    ngx_shinsei_srv_conf_t  *sscf;

    sscf = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_srv_conf_t));
    if (sscf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     sscf->tenant = { 0, NULL };
     *     sscf->cache = NULL;
     */

    sscf->insecure_cookie = NGX_CONF_UNSET;

    return sscf;
}


static char *
ngx_shinsei_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_shinsei_srv_conf_t *prev = parent;
    ngx_shinsei_srv_conf_t *conf = child;

    ngx_shinsei_tenant_t     **tp;
    ngx_shinsei_main_conf_t   *smcf;

    ngx_conf_merge_value(conf->insecure_cookie, prev->insecure_cookie, 0);
    ngx_conf_merge_str_value(conf->mail_from, prev->mail_from, "");

    if (conf->tenant.len && conf->cache == NULL) {
        smcf = ngx_http_conf_get_module_main_conf(cf, ngx_shinsei_module);

        conf->cache = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_tenant_t));
        if (conf->cache == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->cache->code = conf->tenant;

        tp = ngx_array_push(&smcf->tenants);
        if (tp == NULL) {
            return NGX_CONF_ERROR;
        }

        *tp = conf->cache;
    }

    return NGX_CONF_OK;
}


static void *
ngx_shinsei_create_loc_conf(ngx_conf_t *cf)
{
    ngx_shinsei_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    slcf->app = NGX_CONF_UNSET_UINT;
    slcf->body_limit = NGX_CONF_UNSET_SIZE;

    return slcf;
}


static char *
ngx_shinsei_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_shinsei_loc_conf_t *prev = parent;
    ngx_shinsei_loc_conf_t *conf = child;

    ngx_shinsei_srv_conf_t     *sscf;
    ngx_shinsei_main_conf_t    *smcf;
    ngx_http_core_loc_conf_t   *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    ngx_conf_merge_uint_value(conf->app, prev->app, NGX_SHINSEI_APP_NONE);

    /* forms are parsed in memory: by default as large as the buffer */

    ngx_conf_merge_size_value(conf->body_limit, prev->body_limit,
                              clcf->client_body_buffer_size);

    if (conf->app == NGX_SHINSEI_APP_NONE) {
        return NGX_CONF_OK;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_shinsei_module);
    sscf = ngx_http_conf_get_module_srv_conf(cf, ngx_shinsei_module);

    if (smcf->templates == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\" needs \"shinsei_templates\" "
                           "in the http block");
        return NGX_CONF_ERROR;
    }

    if (conf->app == NGX_SHINSEI_APP_ERROR) {
        return NGX_CONF_OK;
    }

    if (smcf->db.conninfo.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\" needs \"shinsei_db\" "
                           "in the http block");
        return NGX_CONF_ERROR;
    }

    if (sscf->tenant.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\" needs \"shinsei_tenant\" "
                           "in its server block");
        return NGX_CONF_ERROR;
    }

    /* accounts: personal data is encrypted, mails are sent with links */

    if (smcf->keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\" needs \"shinsei_data_keys\" "
                           "in the http block");
        return NGX_CONF_ERROR;
    }

    if (smcf->smtp.url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\" needs \"shinsei_smtp\" "
                           "in the http block");
        return NGX_CONF_ERROR;
    }

    if (sscf->site_url.len == 0 || sscf->mail_from.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\" needs \"shinsei_site_url\" "
                           "and \"shinsei_mail_from\" for its server");
        return NGX_CONF_ERROR;
    }

    if (conf->body_limit > clcf->client_body_buffer_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_body_limit\" (%uz) is larger than "
                           "\"client_body_buffer_size\" (%uz): forms are "
                           "parsed in memory, raise the buffer",
                           conf->body_limit, clcf->client_body_buffer_size);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * shinsei_db "conninfo" [pool=N] [queue=N] [connect_timeout=time]
 *            [query_timeout=time] [queue_timeout=time];
 */

static char *
ngx_shinsei_db(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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

    rv = ngx_shinsei_pg_parse_hosts(cf, &smcf->db, opts);

    PQconninfoFree(opts);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

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

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_db\": invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


static char *
ngx_shinsei_templates(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->templates) {
        return "is duplicate";
    }

    value = cf->args->elts;
    smcf->templates_path = value[1];

    if (ngx_conf_full_name(cf->cycle, &smcf->templates_path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (smcf->templates_path.len > 1
           && smcf->templates_path.data[smcf->templates_path.len - 1] == '/')
    {
        smcf->templates_path.len--;
    }

    smcf->templates = ngx_shinsei_tmpl_load(cf, &smcf->templates_path);
    if (smcf->templates == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* shinsei_session_timeout idle absolute; */

static char *
ngx_shinsei_session_timeout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    time_t      idle, absolute;
    ngx_str_t  *value;

    if (smcf->session_idle != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    idle = ngx_parse_time(&value[1], 1);
    absolute = ngx_parse_time(&value[2], 1);

    if (idle == (time_t) NGX_ERROR || absolute == (time_t) NGX_ERROR
        || idle <= 0 || absolute < idle)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_session_timeout\" takes an idle and "
                           "an absolute time, the idle one not longer");
        return NGX_CONF_ERROR;
    }

    smcf->session_idle = idle;
    smcf->session_absolute = absolute;

    return NGX_CONF_OK;
}


static char *
ngx_shinsei_tenant(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_srv_conf_t *sscf = conf;

    u_char     *p;
    ngx_str_t  *value;

    if (sscf->tenant.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 32) {
        goto invalid;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '-' || *p == '_'))
        {
            goto invalid;
        }
    }

    sscf->tenant = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_tenant\": \"%V\" is not a city code "
                       "(1 to 32 of a-z, 0-9, \"-\" and \"_\")", &value[1]);

    return NGX_CONF_ERROR;
}


static char *
ngx_shinsei_app(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_loc_conf_t *slcf = conf;

    ngx_str_t                 *value;
    ngx_shinsei_main_conf_t   *smcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->app != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "citizen") == 0) {
        slcf->app = NGX_SHINSEI_APP_CITIZEN;

    } else if (ngx_strcmp(value[1].data, "error") == 0) {
        slcf->app = NGX_SHINSEI_APP_ERROR;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\": unknown application \"%V\", "
                           "expected \"citizen\" or \"error\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_shinsei_module);
    smcf->used = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_shinsei_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_shinsei_init_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_main_conf_t  *smcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_shinsei_module);

    if (smcf == NULL || !smcf->used || smcf->db.conninfo.len == 0) {
        return NGX_OK;
    }

    ngx_shinsei_crypto_init_process(smcf);

    if (ngx_shinsei_pg_init_process(cycle, &smcf->db) != NGX_OK
        || ngx_shinsei_catalogue_init_process(cycle) != NGX_OK
        || ngx_shinsei_purge_init_process(cycle, smcf) != NGX_OK
        || ngx_shinsei_rekey_init_process(cycle, smcf) != NGX_OK
        || ngx_shinsei_tenant_init_process(cycle, smcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (smcf->smtp.url.len
        && ngx_shinsei_mail_init_process(cycle, smcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_shinsei_exit_process(ngx_cycle_t *cycle)
{
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_shinsei_module);

    if (smcf == NULL || !smcf->used) {
        return;
    }

    /* users first: the mail drainer holds transfers and queries */

    ngx_shinsei_mail_exit_process(cycle);
    ngx_shinsei_catalogue_exit_process(cycle);
    ngx_shinsei_purge_exit_process(cycle);
    ngx_shinsei_rekey_exit_process(cycle);
    ngx_shinsei_pg_exit_process(cycle);
    ngx_shinsei_tenant_exit_process(cycle, smcf);
}


static char *
ngx_shinsei_data_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    ngx_str_t  *value, name;

    if (smcf->keys) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_shinsei_crypto_load_keys(cf, &name, &smcf->keys);
}


/* shinsei_password_kdf ln=15 r=8 p=3; (scrypt: N = 2^ln) */

static char *
ngx_shinsei_password_kdf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;
    ngx_uint_t  i;

    if (smcf->kdf.ln != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        n = NGX_ERROR;

        if (ngx_strncmp(value[i].data, "ln=", 3) == 0) {
            n = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (n >= 10 && n <= 20) {
                smcf->kdf.ln = n;
                continue;
            }

        } else if (ngx_strncmp(value[i].data, "r=", 2) == 0) {
            n = ngx_atoi(value[i].data + 2, value[i].len - 2);

            if (n >= 1 && n <= 32) {
                smcf->kdf.r = n;
                continue;
            }

        } else if (ngx_strncmp(value[i].data, "p=", 2) == 0) {
            n = ngx_atoi(value[i].data + 2, value[i].len - 2);

            if (n >= 1 && n <= 16) {
                smcf->kdf.p = n;
                continue;
            }
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_password_kdf\": invalid parameter "
                           "\"%V\" (ln=10..20 r=1..32 p=1..16)", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (smcf->kdf.ln == NGX_CONF_UNSET_UINT || smcf->kdf.r == 0
        || smcf->kdf.p == 0)
    {
        return "needs ln=, r= and p=";
    }

    if (ngx_shinsei_kdf_check(smcf->kdf.ln, smcf->kdf.r, smcf->kdf.p)
        != NGX_OK)
    {
        return "asks for more than 256 MiB per hash (128 * r * 2^ln) or "
               "more than 2^24 for 2^ln * r * p";
    }

    return NGX_CONF_OK;
}


/* one password per line, refused whatever their case (NIST SP 800-63B) */

static char *
ngx_shinsei_blocklist(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    u_char     *p, *last, *eol;
    ngx_str_t  *value, name, text, *entry;

    if (smcf->blocklist) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK
        || ngx_shinsei_read_small_file(cf, &name, &text) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf->blocklist = ngx_array_create(cf->pool, 16384, sizeof(ngx_str_t));
    if (smcf->blocklist == NULL) {
        return NGX_CONF_ERROR;
    }

    last = text.data + text.len;

    for (p = text.data; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            eol = last;
        }

        if (eol > p && eol[-1] == CR) {
            eol[-1] = LF;
        }

        if (eol == p || (eol == p + 1 && *p == LF)) {
            continue;
        }

        entry = ngx_array_push(smcf->blocklist);
        if (entry == NULL) {
            return NGX_CONF_ERROR;
        }

        entry->data = p;
        entry->len = (eol > p && eol[-1] == LF) ? eol - 1 - p : eol - p;
        ngx_strlow(p, p, entry->len);
    }

    ngx_qsort(smcf->blocklist->elts, smcf->blocklist->nelts,
              sizeof(ngx_str_t), ngx_shinsei_str_cmp);

    return NGX_CONF_OK;
}


/*
 * shinsei_smtp smtp://host:port [auth_file=path] [starttls] [ca_file=path]
 *              [timeout=10s] [retry=30s] [attempts=10];
 */

static char *
ngx_shinsei_smtp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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
                || ngx_shinsei_read_small_file(cf, &file, &text) != NGX_OK)
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


/* the address of this site in links sent by mail, never the Host header */

static char *
ngx_shinsei_site_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_srv_conf_t *sscf = conf;

    u_char     *p;
    ngx_str_t  *value, url;

    if (sscf->site_url.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    url = value[1];

    while (url.len && url.data[url.len - 1] == '/') {
        url.len--;
    }

    if (!((url.len > 8 && ngx_strncmp(url.data, "https://", 8) == 0)
          || (url.len > 7 && ngx_strncmp(url.data, "http://", 7) == 0)))
    {
        goto invalid;
    }

    for (p = url.data; p < url.data + url.len; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '<' || *p == '>') {
            goto invalid;
        }
    }

    sscf->site_url = url;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_site_url\": \"%V\" is not an http:// or "
                       "https:// URL", &value[1]);

    return NGX_CONF_ERROR;
}


static char *
ngx_shinsei_mail_from(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_srv_conf_t *sscf = conf;

    u_char     *p, *at;
    ngx_str_t  *value;

    if (sscf->mail_from.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    at = NULL;

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>'
            || *p == '"' || *p == ',')
        {
            goto invalid;
        }

        if (*p == '@') {
            if (at) {
                goto invalid;
            }

            at = p;
        }
    }

    if (at == NULL || at == value[1].data
        || at == value[1].data + value[1].len - 1)
    {
        goto invalid;
    }

    sscf->mail_from = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_mail_from\": \"%V\" is not an address",
                       &value[1]);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_shinsei_read_small_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *text)
{
    ssize_t          n;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 16 * 1024 * 1024)
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a file of at most 16 MB", name);
        return NGX_ERROR;
    }

    text->len = ngx_file_size(&fi);
    text->data = ngx_pnalloc(cf->pool, text->len + 1);

    if (text->data == NULL) {
        ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, text->data, text->len, 0);
    ngx_close_file(file.fd);

    if (n != (ssize_t) text->len) {
        return NGX_ERROR;
    }

    text->data[text->len] = '\0';

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_shinsei_str_cmp(const void *one, const void *two)
{
    const ngx_str_t  *a = one;
    const ngx_str_t  *b = two;

    return (int) ngx_memn2cmp(a->data, b->data, a->len, b->len);
}
