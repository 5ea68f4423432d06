
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Directives, configuration structures and the process hooks.  The
 * directives of a subsystem are parsed next to it (shinsei_db in
 * ngx_shinsei_pg_conf.c, shinsei_smtp in ngx_shinsei_smtp.c, ...).
 */


#include "ngx_shinsei_common.h"
#include "ngx_shinsei_app.h"
#include "ngx_shinsei_assets.h"
#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_form.h"
#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_mail.h"
#include "ngx_shinsei_pg.h"
#include "ngx_shinsei_citizen_catalogue.h"
#include "ngx_shinsei_purge.h"
#include "ngx_shinsei_rekey.h"
#include "ngx_shinsei_request.h"
#include "ngx_shinsei_response.h"
#include "ngx_shinsei_session.h"
#include "ngx_shinsei_session_cache.h"
#include "ngx_shinsei_smtp.h"
#include "ngx_shinsei_tenant.h"
#include "ngx_shinsei_tmpl.h"


static ngx_int_t ngx_shinsei_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_shinsei_postconfiguration(ngx_conf_t *cf);
static void *ngx_shinsei_create_main_conf(ngx_conf_t *cf);
static char *ngx_shinsei_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_shinsei_create_srv_conf(ngx_conf_t *cf);
static char *ngx_shinsei_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void *ngx_shinsei_create_loc_conf(ngx_conf_t *cf);
static char *ngx_shinsei_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_shinsei_templates(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_session_timeout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_tenant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_app(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_shinsei_site_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_shinsei_mail_from(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_shinsei_init_process(ngx_cycle_t *cycle);
static void ngx_shinsei_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_shinsei_commands[] = {

    { ngx_string("shinsei_db"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_shinsei_pg_conf_db,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_templates"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_templates,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_assets"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_shinsei_assets_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_session_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_shinsei_session_timeout,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_session_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_shinsei_session_cache_conf,
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
      ngx_shinsei_crypto_keys_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_password_kdf"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_shinsei_crypto_kdf_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_password_blocklist"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_shinsei_form_blocklist_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shinsei_password_budget"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_shinsei_main_conf_t, password_budget),
      NULL },

    { ngx_string("shinsei_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_shinsei_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("shinsei_smtp"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_shinsei_smtp_conf,
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
    ngx_shinsei_preconfiguration,          /* preconfiguration */
    ngx_shinsei_postconfiguration,         /* postconfiguration */

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


/* the variables: $shinsei_client */

static ngx_int_t
ngx_shinsei_preconfiguration(ngx_conf_t *cf)
{
    return ngx_shinsei_request_add_variables(cf);
}


/* the header filters: the security headers, the session cookie */

static ngx_int_t
ngx_shinsei_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_shinsei_response_init(cf) != NGX_OK
        || ngx_shinsei_session_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


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
     *     smcf->assets = NULL;
     *     smcf->session_idle = 0;
     *     smcf->session_absolute = 0;
     *     smcf->session_zone = NULL;
     *     smcf->used = 0;
     */

    smcf->db.pool_size = NGX_CONF_UNSET_UINT;
    smcf->db.queue_size = NGX_CONF_UNSET_UINT;
    smcf->db.connect_timeout = NGX_CONF_UNSET_MSEC;
    smcf->db.query_timeout = NGX_CONF_UNSET_MSEC;
    smcf->db.queue_timeout = NGX_CONF_UNSET_MSEC;
    smcf->kdf.ln = NGX_CONF_UNSET_UINT;
    smcf->password_budget = NGX_CONF_UNSET;
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

    ngx_conf_init_msec_value(smcf->purge_interval, 600000);

    /* a worker hashes at most this many passwords at once, queue included */

    ngx_conf_init_value(smcf->password_budget, 32);

    if (smcf->password_budget < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_password_budget\" must be at least 1");
        return NGX_CONF_ERROR;
    }

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

    /*
     * compiled here, once the whole http block is read: {{@name}} in a
     * template needs shinsei_assets, wherever that stands
     */

    if (smcf->templates_path.data) {
        smcf->templates = ngx_shinsei_tmpl_load(cf, &smcf->templates_path,
                                                smcf->assets);
        if (smcf->templates == NULL) {
            return NGX_CONF_ERROR;
        }
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

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->app = NULL;
     */

    slcf->body_limit = NGX_CONF_UNSET_SIZE;
    slcf->session_idle = NGX_CONF_UNSET;
    slcf->session_absolute = NGX_CONF_UNSET;

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

    /* forms are parsed in memory: by default as large as the buffer */

    ngx_conf_merge_size_value(conf->body_limit, prev->body_limit,
                              clcf->client_body_buffer_size);

    if (conf->session_idle == NGX_CONF_UNSET) {
        conf->session_idle = prev->session_idle;
        conf->session_absolute = prev->session_absolute;
    }

    if (conf->app == NULL) {
        return NGX_CONF_OK;
    }

    /* the app's own lifetimes unless shinsei_session_timeout says */

    if (conf->session_idle == NGX_CONF_UNSET) {
        conf->session_idle = conf->app->session_idle;
        conf->session_absolute = conf->app->session_absolute;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_shinsei_module);
    sscf = ngx_http_conf_get_module_srv_conf(cf, ngx_shinsei_module);

    /* the purge removes what no app would take any more */

    smcf->session_idle = ngx_max(smcf->session_idle, conf->session_idle);
    smcf->session_absolute = ngx_max(smcf->session_absolute,
                                     conf->session_absolute);

    if (smcf->templates == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\" needs \"shinsei_templates\" "
                           "in the http block");
        return NGX_CONF_ERROR;
    }

    if (conf->app->flags & NGX_SHINSEI_APP_ERRORS) {
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


static char *
ngx_shinsei_templates(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->templates_path.data) {
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

    return NGX_CONF_OK;
}


/* shinsei_session_timeout idle absolute; */

static char *
ngx_shinsei_session_timeout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_loc_conf_t *slcf = conf;

    time_t      idle, absolute;
    ngx_str_t  *value;

    if (slcf->session_idle != NGX_CONF_UNSET) {
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

    slcf->session_idle = idle;
    slcf->session_absolute = absolute;

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

    if (slcf->app) {
        return "is duplicate";
    }

    value = cf->args->elts;

    slcf->app = ngx_shinsei_app_find(&value[1]);

    if (slcf->app == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_app\": unknown application \"%V\", "
                           "expected \"citizen\", \"webhook\" or "
                           "\"error\"", &value[1]);
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
        || ngx_shinsei_session_cache_init_process(cycle) != NGX_OK
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
    ngx_shinsei_pg_listen_exit_process(cycle);
    ngx_shinsei_pg_exit_process(cycle);
    ngx_shinsei_tenant_exit_process(cycle, smcf);
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
