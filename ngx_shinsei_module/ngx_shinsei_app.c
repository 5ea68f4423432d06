
/*
 * Copyright (C) ngx_shinsei developers
 *
 * The applications a location can serve (shinsei_app): each is its
 * routes, the steps run before a page (as nginx runs its phases), its
 * session cookie, login page and session statement.  The staff site is
 * one more descriptor here, with pages of its own.
 *
 *   citizen   the residents' site
 *   webhook   calls from providers: no session, CSRF or browser checks
 *   error     nginx's own errors as the site's error page
 */


#include "ngx_shinsei_app.h"
#include "ngx_shinsei_citizen_account.h"
#include "ngx_shinsei_handler.h"
#include "ngx_shinsei_router.h"
#include "ngx_shinsei_session.h"
#include "ngx_shinsei_tenant.h"


extern ngx_shinsei_route_t  ngx_shinsei_catalogue_routes[];
extern ngx_shinsei_route_t  ngx_shinsei_health_routes[];
extern ngx_shinsei_route_t  ngx_shinsei_signup_routes[];
extern ngx_shinsei_route_t  ngx_shinsei_login_routes[];
extern ngx_shinsei_route_t  ngx_shinsei_password_routes[];
extern ngx_shinsei_route_t  ngx_shinsei_mypage_routes[];


static ngx_shinsei_route_t  *ngx_shinsei_citizen_routes[] = {
    ngx_shinsei_catalogue_routes,
    ngx_shinsei_signup_routes,
    ngx_shinsei_login_routes,
    ngx_shinsei_password_routes,
    ngx_shinsei_mypage_routes,
    ngx_shinsei_health_routes,
    NULL
};


static ngx_shinsei_step_pt  ngx_shinsei_citizen_steps[] = {
    ngx_shinsei_tenant_step,
    ngx_shinsei_session_step,
    ngx_shinsei_session_login_step,
    ngx_shinsei_session_csrf_step,
    ngx_shinsei_handler_page,
    NULL
};


/* the payments issue adds the provider's signed webhooks */

static ngx_shinsei_route_t  *ngx_shinsei_webhook_routes[] = {
    NULL
};


static ngx_shinsei_step_pt  ngx_shinsei_webhook_steps[] = {
    ngx_shinsei_tenant_step,
    ngx_shinsei_handler_page,
    NULL
};


static ngx_shinsei_app_t  ngx_shinsei_citizen_app = {
    ngx_string("citizen"),
    NGX_SHINSEI_APP_BROWSER,
    ngx_shinsei_citizen_routes,
    ngx_shinsei_citizen_steps,
    ngx_string("__Host-sid"),
    ngx_string("sid"),
    "/login",
    NGX_SHINSEI_AUTH_PASSWORD,
    NGX_SHINSEI_KIND_CITIZEN,
    &ngx_shinsei_account_session_stmt,
    30 * 60,                    /* OWASP ASVS 4.0.3 3.3.2: 30 minutes idle */
    12 * 60 * 60                /* and 12 hours in all */
};


static ngx_shinsei_app_t  ngx_shinsei_webhook_app = {
    ngx_string("webhook"),
    0,
    ngx_shinsei_webhook_routes,
    ngx_shinsei_webhook_steps,
    ngx_null_string,
    ngx_null_string,
    NULL,
    0,
    NGX_SHINSEI_KIND_NONE,
    NULL,
    0,
    0
};


static ngx_shinsei_app_t  ngx_shinsei_error_app = {
    ngx_string("error"),
    NGX_SHINSEI_APP_BROWSER|NGX_SHINSEI_APP_ERRORS,
    NULL,
    NULL,
    ngx_null_string,
    ngx_null_string,
    NULL,
    0,
    NGX_SHINSEI_KIND_NONE,
    NULL,
    0,
    0
};


static ngx_shinsei_app_t  *ngx_shinsei_apps[] = {
    &ngx_shinsei_citizen_app,
    &ngx_shinsei_webhook_app,
    &ngx_shinsei_error_app,
    NULL
};


ngx_shinsei_app_t *
ngx_shinsei_app_find(ngx_str_t *name)
{
    ngx_shinsei_app_t  **app;

    for (app = ngx_shinsei_apps; *app; app++) {
        if ((*app)->name.len == name->len
            && ngx_strncmp((*app)->name.data, name->data, name->len) == 0)
        {
            return *app;
        }
    }

    return NULL;
}


ngx_shinsei_app_t **
ngx_shinsei_app_all(void)
{
    return ngx_shinsei_apps;
}
