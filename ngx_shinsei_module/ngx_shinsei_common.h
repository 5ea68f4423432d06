
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_COMMON_H_INCLUDED_
#define _NGX_SHINSEI_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>
#include <cjson/cJSON.h>


#define NGX_SHINSEI_HTTP_UNPROCESSABLE  422

/* characters of a new password, at least (of its NFKC form) */
#define NGX_SHINSEI_PASSWORD_MIN      12

/* pages for a browser: security headers, HTML error pages */
#define NGX_SHINSEI_APP_BROWSER       0x01
/* nginx's own errors (error_page ... /_error), no routes */
#define NGX_SHINSEI_APP_ERRORS        0x02

/* how far a session has authenticated */
#define NGX_SHINSEI_AUTH_NONE         0
#define NGX_SHINSEI_AUTH_PASSWORD     1
#define NGX_SHINSEI_AUTH_SECOND       2     /* password and second factor */


typedef struct ngx_shinsei_tmpl_set_s   ngx_shinsei_tmpl_set_t;
typedef struct ngx_shinsei_assets_s     ngx_shinsei_assets_t;
typedef struct ngx_shinsei_route_s      ngx_shinsei_route_t;
typedef struct ngx_shinsei_ctx_s        ngx_shinsei_ctx_t;
typedef struct ngx_shinsei_app_s        ngx_shinsei_app_t;
typedef struct ngx_shinsei_pg_stmt_s    ngx_shinsei_pg_stmt_t;


typedef struct {
    ngx_str_t                  conninfo;
    ngx_array_t               *hosts;        /* a conninfo per host */
    ngx_uint_t                 pool_size;
    ngx_uint_t                 queue_size;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 query_timeout;
    ngx_msec_t                 queue_timeout;
} ngx_shinsei_db_conf_t;


typedef struct {
    ngx_str_t                  id;
    u_char                     key[32];
} ngx_shinsei_data_key_t;


typedef struct {
    u_char                     index_key[32];
    ngx_array_t                keys;         /* the last one encrypts */
} ngx_shinsei_keys_t;


typedef struct {
    ngx_uint_t                 ln;           /* log2 of scrypt's N */
    ngx_uint_t                 r;
    ngx_uint_t                 p;
} ngx_shinsei_kdf_conf_t;


#define NGX_SHINSEI_SMTP_STARTTLS_TLS   1
#define NGX_SHINSEI_SMTP_TLS            2


typedef struct {
    ngx_str_t                  url;
    ngx_str_t                  user;
    ngx_str_t                  password;
    ngx_str_t                  ca_file;
    ngx_flag_t                 starttls;
    ngx_msec_t                 timeout;
    ngx_msec_t                 retry;
    ngx_uint_t                 attempts;

    ngx_addr_t                *addr;
    ngx_str_t                  host;
    ngx_uint_t                 host_is_addr;
    ngx_uint_t                 tls;
#if (NGX_SSL)
    ngx_ssl_t                 *ssl;
#endif
} ngx_shinsei_smtp_conf_t;


typedef struct {
    ngx_shinsei_db_conf_t      db;
    ngx_str_t                  templates_path;
    ngx_shinsei_tmpl_set_t    *templates;    /* made by init_main_conf */
    ngx_shinsei_assets_t      *assets;
    time_t                     session_idle;      /* the longest of all */
    time_t                     session_absolute;  /* apps, for the purge */
    ngx_shm_zone_t            *session_zone;
    ngx_msec_t                 session_ttl;
    ngx_msec_t                 purge_interval;
    ngx_array_t                tenants;      /* ngx_shinsei_tenant_t * */
    ngx_uint_t                 used;         /* shinsei_app was given */

    ngx_shinsei_keys_t        *keys;
    ngx_shinsei_kdf_conf_t     kdf;
    ngx_int_t                  password_budget;   /* hashes at once */
    ngx_str_t                  thread_pool_name;
    ngx_thread_pool_t         *thread_pool;
    ngx_array_t               *blocklist;    /* sorted ngx_str_t */
    ngx_shinsei_smtp_conf_t    smtp;
} ngx_shinsei_main_conf_t;


/*
 * The city a server {} serves (shinsei_tenant): its row of the cities
 * table, kept by each worker (ngx_shinsei_tenant.c).
 */
typedef struct {
    ngx_str_t                  code;
    cJSON                     *city;
    ngx_msec_t                 loaded;
} ngx_shinsei_tenant_t;


typedef struct {
    ngx_str_t                  tenant;
    ngx_shinsei_tenant_t      *cache;
    ngx_flag_t                 insecure_cookie;
    ngx_str_t                  site_url;     /* for links in mails */
    ngx_str_t                  mail_from;
} ngx_shinsei_srv_conf_t;


typedef struct {
    ngx_shinsei_app_t         *app;
    size_t                     body_limit;
    time_t                     session_idle;
    time_t                     session_absolute;
} ngx_shinsei_loc_conf_t;


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  value;
    ngx_str_t                  filename;
    ngx_str_t                  content_type;
} ngx_shinsei_field_t;


/*
 * Who a request comes from, as the session step found it: the kind of
 * user is the app's, user_id 0 is nobody logged in.
 */
typedef struct {
    ngx_str_t                  id;           /* the cookie value */
    ngx_str_t                  new_id;
    u_char                     hash[32];     /* SHA-256 of the id */
    ngx_str_t                  csrf;
    int64_t                    user_id;
    ngx_uint_t                 level;        /* NGX_SHINSEI_AUTH_* */
    time_t                     created;
    time_t                     seen;
    ngx_str_t                  profile;      /* JSON, the app's statement */
    ngx_str_t                  name;         /* of the user, decrypted */
    ngx_str_t                  email;
    ngx_uint_t                 changes;      /* the cache's, at the query */
    unsigned                   valid:1;
    unsigned                   created_now:1;
    unsigned                   expired:1;
    unsigned                   ended:1;
} ngx_shinsei_session_t;


typedef ngx_int_t (*ngx_shinsei_handler_pt)(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx);

/*
 * A step of the request (city, session, login, CSRF, ..., the page), and
 * what runs when a backend wakes the request: NGX_DECLINED goes on with
 * the next step, NGX_DONE waits for a backend, anything else is the
 * answer (an HTTP status, or what sending the response returned).
 */
typedef ngx_shinsei_handler_pt  ngx_shinsei_step_pt;

typedef ngx_int_t (*ngx_shinsei_resume_pt)(ngx_http_request_t *r,
    void *data);


/*
 * An application a location serves (shinsei_app): its routes, the steps
 * before a page, its cookie and sessions.
 */
struct ngx_shinsei_app_s {
    ngx_str_t                  name;
    ngx_uint_t                 flags;        /* NGX_SHINSEI_APP_* */
    ngx_shinsei_route_t      **routes;
    ngx_shinsei_step_pt       *steps;        /* the page last; NULL ends */
    ngx_str_t                  cookie;       /* with __Host- */
    ngx_str_t                  cookie_plain; /* for loopback http */
    const char                *login_path;
    ngx_uint_t                 login_level;  /* for pages that need it */
    ngx_uint_t                 kind;         /* index in the session cache */
    ngx_shinsei_pg_stmt_t     *session_stmt;
    time_t                     session_idle;
    time_t                     session_absolute;
};


struct ngx_shinsei_ctx_s {
    ngx_shinsei_app_t         *app;
    ngx_shinsei_route_t       *route;        /* NULL: refused, see error */
    ngx_uint_t                 step;
    ngx_shinsei_resume_pt      resume;
    void                      *resume_data;
    ngx_uint_t                 allow;        /* methods, for a 405 */
    ngx_uint_t                 error;        /* status of a refused route */
    ngx_str_t                 *params;       /* path parameters */
    ngx_uint_t                 nparams;
    ngx_array_t               *form;         /* ngx_shinsei_field_t */
    ngx_array_t               *args;         /* ngx_shinsei_field_t */
    ngx_shinsei_session_t      session;
    ngx_shinsei_tenant_t      *tenant;
    cJSON                     *view;
    ngx_array_t               *errors;       /* of the form */
    void                      *data;         /* a page's own state */
    unsigned                   waiting:1;
    unsigned                   csrf_checked:1;
    unsigned                   csrf_refused:1;
};


#define ngx_shinsei_log_prefix  "shinsei: "


extern ngx_module_t  ngx_shinsei_module;


#endif /* _NGX_SHINSEI_COMMON_H_INCLUDED_ */
