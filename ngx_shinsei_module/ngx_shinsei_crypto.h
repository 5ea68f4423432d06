
/*
 * Copyright (C) ngx_shinsei developers
 */


#ifndef _NGX_SHINSEI_CRYPTO_H_INCLUDED_
#define _NGX_SHINSEI_CRYPTO_H_INCLUDED_


#include "ngx_shinsei_common.h"


#define NGX_SHINSEI_TOKEN_LEN      43      /* base64url of 32 bytes */


typedef struct ngx_shinsei_password_s  ngx_shinsei_password_t;

typedef ngx_int_t (*ngx_shinsei_password_done_pt)(ngx_http_request_t *r,
    ngx_shinsei_ctx_t *ctx, ngx_shinsei_password_t *pw);


struct ngx_shinsei_password_s {
    ngx_str_t                      password;
    ngx_str_t                      stored;     /* to verify against */

    ngx_uint_t                     verified;   /* out */
    ngx_str_t                      hash;       /* out: new or upgraded */

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
