
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_CRYPTO_H_INCLUDED_
#define _NGX_SHINSEI_CRYPTO_H_INCLUDED_


#include "ngx_shinsei_common.h"


#define NGX_SHINSEI_TOKEN_LEN      43      /* base64url of 32 bytes */
#define NGX_SHINSEI_AAD_LEN        160     /* "table.column:row" */


typedef struct ngx_shinsei_password_s  ngx_shinsei_password_t;

typedef ngx_int_t (*ngx_shinsei_password_done_pt)(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);


struct ngx_shinsei_password_s {
    ngx_str_t                      password;   /* NFKC, when verifying */
    ngx_str_t                      raw;        /* as typed, if it differs */
    ngx_str_t                      stored;     /* to verify against */

    ngx_uint_t                     verified;   /* out */
    ngx_str_t                      hash;       /* out: new or upgraded */
    unsigned                       short_password:1;  /* below the minimum */
    unsigned                       raw_matched:1;

    /* private to ngx_shinsei_crypto.c */
    ngx_shinsei_password_done_pt   done;
    ngx_http_request_t            *request;
    ngx_shinsei_kdf_conf_t        *kdf;
    ngx_uint_t                     mode;
    ngx_event_t                    running;    /* a timer while it runs */
    u_char                         salt[16];   /* for a new hash */
    u_char                         out[128];
};


char *ngx_shinsei_crypto_keys_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_shinsei_crypto_kdf_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_shinsei_crypto_read_file(ngx_conf_t *cf,
    const char *directive, ngx_str_t *name, size_t max, ngx_uint_t secret,
    ngx_pool_t *pool, ngx_str_t *text);
void ngx_shinsei_crypto_init_process(ngx_shinsei_main_conf_t *smcf);
void ngx_shinsei_crypto_current_key(ngx_str_t *id);
ngx_int_t ngx_shinsei_crypto_kdf_check(ngx_uint_t ln, ngx_uint_t r,
    ngx_uint_t p);

ngx_int_t ngx_shinsei_crypto_encrypt(ngx_pool_t *pool, ngx_str_t *plain,
    const char *aad, ngx_str_t *out);
ngx_int_t ngx_shinsei_crypto_decrypt(ngx_pool_t *pool, ngx_str_t *in,
    const char *aad, ngx_str_t *out);
char *ngx_shinsei_crypto_aad(u_char *buf, const char *column,
    ngx_str_t *row);
char *ngx_shinsei_crypto_aad_id(u_char *buf, const char *column,
    int64_t id);
ngx_int_t ngx_shinsei_crypto_blind_index(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *hex);
ngx_int_t ngx_shinsei_crypto_token(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *hash_hex);
ngx_int_t ngx_shinsei_crypto_token_hash(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *hash_hex);

ngx_int_t ngx_shinsei_crypto_password_hash(ngx_http_request_t *r,
    ngx_str_t *password, ngx_shinsei_password_done_pt done);
ngx_int_t ngx_shinsei_crypto_password_verify(ngx_http_request_t *r,
    ngx_str_t *password, ngx_str_t *stored,
    ngx_shinsei_password_done_pt done);


#endif /* _NGX_SHINSEI_CRYPTO_H_INCLUDED_ */
