
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Cryptography for the rest of the module:
 *
 * - passwords: scrypt (OpenSSL's EVP_KDF) in nginx's thread pool, never
 *   on the event loop; stored as "$scrypt$ln=15,r=8,p=3$salt$hash" so the
 *   cost can be raised later, the old hashes upgraded at the next login;
 * - personal data at rest: AES-256-GCM with a random 96-bit nonce, stored
 *   as "keyid:base64(nonce | ciphertext | tag)" so keys can rotate, the
 *   column name as associated data so values cannot be moved between
 *   columns;
 * - look-ups by e-mail: a keyed HMAC-SHA256 of the normalized address (a
 *   blind index);
 * - single-use tokens: 256 random bits; only their SHA-256 is stored.
 *
 * Keys come from the file named by shinsei_data_keys, read once at
 * configuration load:
 *
 *     index <64 hex digits>         the blind-index key (never rotated)
 *     key <id> <64 hex digits>      data keys; the last one encrypts
 */


#include "ngx_shinsei_crypto.h"
#include "ngx_shinsei_request.h"
#include "ngx_shinsei_string.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#if (NGX_LINUX)
#include <sys/resource.h>
#include <sys/syscall.h>
#endif


#define NGX_SHINSEI_SALT_LEN        16
#define NGX_SHINSEI_HASH_LEN        32
#define NGX_SHINSEI_NONCE_LEN       12
#define NGX_SHINSEI_TAG_LEN         16

typedef struct {
    const char                *column;
    const char                *aad;
} ngx_shinsei_crypto_first_t;


#define NGX_SHINSEI_PW_HASH         0
#define NGX_SHINSEI_PW_VERIFY       1
#define NGX_SHINSEI_PW_RUNNING      60000


static char *ngx_shinsei_crypto_load_keys(ngx_conf_t *cf, ngx_str_t *file,
    ngx_shinsei_keys_t **keys);
static void ngx_shinsei_crypto_wipe_keys(void *data);
static ngx_uint_t ngx_shinsei_crypto_key_id_valid(ngx_str_t *id);
static void ngx_shinsei_password_thread(void *data, ngx_log_t *log);
static void ngx_shinsei_password_event(ngx_event_t *ev);
static void ngx_shinsei_password_running(ngx_event_t *ev);
static ngx_int_t ngx_shinsei_password_resume(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_shinsei_password_post(ngx_http_request_t *r,
    ngx_shinsei_password_t *pw);
static ngx_int_t ngx_shinsei_scrypt(ngx_str_t *password, u_char *salt,
    ngx_uint_t ln, ngx_uint_t r, ngx_uint_t p, u_char *out);
static u_char *ngx_shinsei_password_encode(u_char *dst, ngx_uint_t ln,
    ngx_uint_t r, ngx_uint_t p, u_char *salt, u_char *hash);
static ngx_int_t ngx_shinsei_password_decode(ngx_str_t *stored,
    ngx_uint_t *ln, ngx_uint_t *r, ngx_uint_t *p, u_char *salt,
    u_char *hash);
static ngx_int_t ngx_shinsei_hex_key(ngx_str_t *hex, u_char *key);
static ngx_shinsei_data_key_t *ngx_shinsei_find_key(ngx_str_t *id);
static const char *ngx_shinsei_crypto_first_aad(const char *aad);
static ngx_int_t ngx_shinsei_crypto_open(ngx_pool_t *pool,
    ngx_shinsei_data_key_t *key, ngx_str_t *raw, const char *aad,
    ngx_str_t *out);


static ngx_shinsei_main_conf_t  *ngx_shinsei_crypto_conf;
static ngx_int_t                 ngx_shinsei_crypto_hashing;

/* verified against when the account does not exist: the same work */
static u_char  ngx_shinsei_dummy_salt[NGX_SHINSEI_SALT_LEN] =
    "shinsei-no-user!";


/* shinsei_data_keys path; */

char *
ngx_shinsei_crypto_keys_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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

char *
ngx_shinsei_crypto_kdf_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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

    if (ngx_shinsei_crypto_kdf_check(smcf->kdf.ln, smcf->kdf.r, smcf->kdf.p)
        != NGX_OK)
    {
        return "asks for more than 256 MiB per hash (128 * r * 2^ln) or "
               "more than 2^24 for 2^ln * r * p";
    }

    return NGX_CONF_OK;
}


/*
 * A file the configuration names (directive's), read whole at load, into
 * pool; at most max bytes.  A secret (keys, passwords) readable by group
 * or others is refused: whoever can read it can read the residents' data.
 */

ngx_int_t
ngx_shinsei_crypto_read_file(ngx_conf_t *cf, const char *directive,
    ngx_str_t *name, size_t max, ngx_uint_t secret, ngx_pool_t *pool,
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
                           "\"%s\": cannot open \"%V\"", directive, name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi) || ngx_file_size(&fi) > (off_t) max)
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\": \"%V\" is not a file of at most %uz "
                           "bytes", directive, name, max);
        return NGX_ERROR;
    }

    if (secret && (ngx_file_access(&fi) & 0077)) {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\": \"%V\" holds secrets but group or "
                           "others may read it (mode 0%ui%ui%ui): make it "
                           "0600 or 0400", directive, name,
                           (ngx_file_access(&fi) >> 6) & 7,
                           (ngx_file_access(&fi) >> 3) & 7,
                           ngx_file_access(&fi) & 7);
        return NGX_ERROR;
    }

    text->len = ngx_file_size(&fi);
    text->data = ngx_pnalloc(pool, text->len + 1);

    if (text->data == NULL) {
        ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, text->data, text->len, 0);
    ngx_close_file(file.fd);

    if (n != (ssize_t) text->len) {
        ngx_explicit_memzero(text->data, text->len);
        return NGX_ERROR;
    }

    text->data[text->len] = '\0';

    return NGX_OK;
}


/*
 * The key file.  Every way out wipes what it read; the keys themselves are
 * wiped when the configuration that holds them is freed (a reload, the
 * end), and at once when the file is refused.
 */

static char *
ngx_shinsei_crypto_load_keys(ngx_conf_t *cf, ngx_str_t *file,
    ngx_shinsei_keys_t **keys)
{
    u_char                  *p, *last, *line, *eol;
    ngx_str_t                word[3], text;
    ngx_uint_t               nwords, have_index, lineno, i;
    ngx_pool_cleanup_t      *cln;
    ngx_shinsei_keys_t      *k;
    ngx_shinsei_data_key_t  *dk;

    k = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_keys_t));
    if (k == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&k->keys, cf->pool, 4, sizeof(ngx_shinsei_data_key_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_shinsei_crypto_wipe_keys;
    cln->data = k;

    if (ngx_shinsei_crypto_read_file(cf, "shinsei_data_keys", file, 65536, 1,
                                     cf->temp_pool, &text)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    have_index = 0;
    lineno = 0;
    last = text.data + text.len;

    for (line = text.data; line < last; line = eol + 1) {

        eol = ngx_strlchr(line, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        lineno++;

        /* split into at most three words */

        nwords = 0;
        p = line;

        while (p < eol && nwords < 3) {
            while (p < eol && (*p == ' ' || *p == '\t' || *p == '\r')) {
                p++;
            }

            if (p == eol || *p == '#') {
                break;
            }

            word[nwords].data = p;

            while (p < eol && *p != ' ' && *p != '\t' && *p != '\r') {
                p++;
            }

            word[nwords].len = p - word[nwords].data;
            nwords++;
        }

        if (nwords == 0) {
            continue;
        }

        if (nwords == 2 && word[0].len == 5
            && ngx_strncmp(word[0].data, "index", 5) == 0)
        {
            if (have_index) {
                /* one index key only: which would the look-ups use? */
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"shinsei_data_keys\": line %ui of \"%V\" "
                                   "repeats the \"index\" line", lineno, file);
                goto failed;
            }

            if (ngx_shinsei_hex_key(&word[1], k->index_key) == NGX_OK) {
                have_index = 1;
                continue;
            }
        }

        if (nwords == 3 && word[0].len == 3
            && ngx_strncmp(word[0].data, "key", 3) == 0
            && ngx_shinsei_crypto_key_id_valid(&word[1]))
        {
            dk = k->keys.elts;

            for (i = 0; i < k->keys.nelts; i++) {
                if (dk[i].id.len == word[1].len
                    && ngx_strncmp(dk[i].id.data, word[1].data, word[1].len)
                       == 0)
                {
                    /* which of the two decrypts old data? */
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "\"shinsei_data_keys\": line %ui of "
                                       "\"%V\" repeats the key id \"%V\"",
                                       lineno, file, &dk[i].id);
                    goto failed;
                }
            }

            dk = ngx_array_push(&k->keys);
            if (dk == NULL) {
                goto failed;
            }

            dk->id.data = ngx_pstrdup(cf->pool, &word[1]);
            dk->id.len = word[1].len;

            if (dk->id.data && ngx_shinsei_hex_key(&word[2], dk->key) == NGX_OK)
            {
                continue;
            }
        }

        /* the line itself is never logged: it may hold a key */

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_data_keys\": line %ui of \"%V\" is not "
                           "\"index <64 hex>\" or \"key <id> <64 hex>\" (an "
                           "id of 1 to 16 of A-Z, a-z, 0-9, \"-\" and \"_\")",
                           lineno, file);
        goto failed;
    }

    ngx_explicit_memzero(text.data, text.len);

    if (!have_index || k->keys.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_data_keys\": \"%V\" needs an \"index\" "
                           "line and at least one \"key\" line", file);
        ngx_shinsei_crypto_wipe_keys(k);
        return NGX_CONF_ERROR;
    }

    *keys = k;

    return NGX_CONF_OK;

failed:

    ngx_explicit_memzero(text.data, text.len);
    ngx_shinsei_crypto_wipe_keys(k);

    return NGX_CONF_ERROR;
}


static void
ngx_shinsei_crypto_wipe_keys(void *data)
{
    ngx_shinsei_keys_t *k = data;

    ngx_explicit_memzero(k->index_key, sizeof(k->index_key));
    ngx_explicit_memzero(k->keys.elts,
                         k->keys.nelts * sizeof(ngx_shinsei_data_key_t));
}


/*
 * A key id: 1 to 16 of A-Z, a-z, 0-9, "-" and "_"; a stored value names
 * it before a ":" (and ".v1" after it marks a value of the first format,
 * whose associated data was the column's name only).
 */

static ngx_uint_t
ngx_shinsei_crypto_key_id_valid(ngx_str_t *id)
{
    u_char  *p;

    if (id->len == 0 || id->len > 16) {
        return 0;
    }

    for (p = id->data; p < id->data + id->len; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            return 0;
        }
    }

    return 1;
}


void
ngx_shinsei_crypto_init_process(ngx_shinsei_main_conf_t *smcf)
{
    ngx_shinsei_crypto_conf = smcf;
}


/* the id of the key new values are encrypted with: the file's last */

void
ngx_shinsei_crypto_current_key(ngx_str_t *id)
{
    ngx_shinsei_keys_t      *keys;
    ngx_shinsei_data_key_t  *key;

    keys = ngx_shinsei_crypto_conf->keys;
    key = (ngx_shinsei_data_key_t *) keys->keys.elts + keys->keys.nelts - 1;

    *id = key->id;
}


ngx_int_t
ngx_shinsei_crypto_encrypt(ngx_pool_t *pool, ngx_str_t *plain, const char *aad,
    ngx_str_t *out)
{
    int                      len;
    u_char                  *buf, *p;
    ngx_str_t                src, dst;
    ngx_int_t                rc;
    EVP_CIPHER_CTX          *cipher;
    ngx_shinsei_keys_t      *keys;
    ngx_shinsei_data_key_t  *key;

    keys = ngx_shinsei_crypto_conf->keys;
    key = (ngx_shinsei_data_key_t *) keys->keys.elts + keys->keys.nelts - 1;

    buf = ngx_pnalloc(pool, NGX_SHINSEI_NONCE_LEN + plain->len
                            + NGX_SHINSEI_TAG_LEN);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    if (RAND_bytes(buf, NGX_SHINSEI_NONCE_LEN) != 1) {
        return NGX_ERROR;
    }

    cipher = EVP_CIPHER_CTX_new();
    if (cipher == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    p = buf + NGX_SHINSEI_NONCE_LEN;

    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key->key, buf)
        != 1
        || EVP_EncryptUpdate(cipher, NULL, &len, (u_char *) aad,
                             ngx_strlen(aad)) != 1
        || EVP_EncryptUpdate(cipher, p, &len, plain->data, plain->len) != 1)
    {
        goto done;
    }

    p += len;

    if (EVP_EncryptFinal_ex(cipher, p, &len) != 1) {
        goto done;
    }

    p += len;

    if (EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_GET_TAG, NGX_SHINSEI_TAG_LEN,
                            p) != 1)
    {
        goto done;
    }

    p += NGX_SHINSEI_TAG_LEN;

    src.data = buf;
    src.len = p - buf;

    out->data = ngx_pnalloc(pool, key->id.len + 1
                                  + ngx_base64_encoded_length(src.len));
    if (out->data == NULL) {
        goto done;
    }

    p = ngx_cpymem(out->data, key->id.data, key->id.len);
    *p++ = ':';

    dst.data = p;
    ngx_encode_base64(&dst, &src);

    out->len = key->id.len + 1 + dst.len;
    rc = NGX_OK;

done:

    EVP_CIPHER_CTX_free(cipher);

    return rc;
}


/*
 * A value "keyid:base64(nonce | ciphertext | tag)", with aad its table,
 * column and row (ngx_shinsei_crypto_aad()).  A value of the first format
 * ("keyid.v1:"; sql/013 marks them, and any written by another client
 * than the module) was bound to the column's name only: it is read so,
 * and the re-encryption job binds it to its row.
 */

ngx_int_t
ngx_shinsei_crypto_decrypt(ngx_pool_t *pool, ngx_str_t *in, const char *aad,
    ngx_str_t *out)
{
    u_char                  *colon;
    ngx_str_t                id, b64, raw;
    ngx_uint_t               legacy;
    const char              *first;
    ngx_shinsei_data_key_t  *key;

    colon = ngx_strlchr(in->data, in->data + in->len, ':');
    if (colon == NULL) {
        return NGX_ERROR;
    }

    id.data = in->data;
    id.len = colon - in->data;

    legacy = id.len > 3 && ngx_strncmp(colon - 3, ".v1", 3) == 0;

    if (legacy) {
        id.len -= 3;
    }

    key = ngx_shinsei_find_key(&id);
    if (key == NULL) {
        return NGX_ERROR;
    }

    b64.data = colon + 1;
    b64.len = in->data + in->len - b64.data;

    raw.data = ngx_pnalloc(pool, ngx_base64_decoded_length(b64.len));
    if (raw.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(&raw, &b64) != NGX_OK
        || raw.len < NGX_SHINSEI_NONCE_LEN + NGX_SHINSEI_TAG_LEN)
    {
        return NGX_ERROR;
    }

    if (legacy) {
        first = ngx_shinsei_crypto_first_aad(aad);

        return first ? ngx_shinsei_crypto_open(pool, key, &raw, first, out)
                     : NGX_ERROR;
    }

    /* a value bound to another row or column fails here */

    return ngx_shinsei_crypto_open(pool, key, &raw, aad, out);
}


/* the associated data of a value: "table.column:row" (finding 10) */

char *
ngx_shinsei_crypto_aad(u_char *buf, const char *column, ngx_str_t *row)
{
    *ngx_snprintf(buf, NGX_SHINSEI_AAD_LEN - 1, "%s:%V", column, row) = '\0';

    return (char *) buf;
}


char *
ngx_shinsei_crypto_aad_id(u_char *buf, const char *column, int64_t id)
{
    *ngx_snprintf(buf, NGX_SHINSEI_AAD_LEN - 1, "%s:%L", column, id) = '\0';

    return (char *) buf;
}


/* the associated data of the first format: the column's name */

static const char *
ngx_shinsei_crypto_first_aad(const char *aad)
{
    size_t                       len;
    const char                  *colon;
    ngx_shinsei_crypto_first_t  *f;

    static ngx_shinsei_crypto_first_t  first[] = {
        { "citizens.email_enc", "email" },
        { "citizens.name_enc", "name" },
        { "citizens.name_kana_enc", "name_kana" },
        { "outbox.recipient_enc", "email" },
        { "outbox.body_enc", "mail_body" },
        { NULL, NULL }
    };

    colon = (const char *) ngx_strchr(aad, ':');
    len = colon ? (size_t) (colon - aad) : ngx_strlen(aad);

    for (f = first; f->column; f++) {
        if (ngx_strlen(f->column) == len
            && ngx_strncmp(f->column, aad, len) == 0)
        {
            return f->aad;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_shinsei_crypto_open(ngx_pool_t *pool, ngx_shinsei_data_key_t *key,
    ngx_str_t *raw, const char *aad, ngx_str_t *out)
{
    int              len;
    u_char          *p;
    size_t           n;
    ngx_int_t        rc;
    EVP_CIPHER_CTX  *cipher;

    n = raw->len - NGX_SHINSEI_NONCE_LEN - NGX_SHINSEI_TAG_LEN;

    out->data = ngx_pnalloc(pool, n + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    cipher = EVP_CIPHER_CTX_new();
    if (cipher == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    p = out->data;

    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key->key,
                           raw->data) != 1
        || EVP_DecryptUpdate(cipher, NULL, &len, (u_char *) aad,
                             ngx_strlen(aad)) != 1
        || EVP_DecryptUpdate(cipher, p, &len,
                             raw->data + NGX_SHINSEI_NONCE_LEN, n) != 1)
    {
        goto done;
    }

    p += len;

    if (EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_SET_TAG, NGX_SHINSEI_TAG_LEN,
                            raw->data + raw->len - NGX_SHINSEI_TAG_LEN) != 1
        || EVP_DecryptFinal_ex(cipher, p, &len) != 1)
    {
        goto done;
    }

    p += len;
    *p = '\0';
    out->len = p - out->data;
    rc = NGX_OK;

done:

    EVP_CIPHER_CTX_free(cipher);

    if (rc != NGX_OK) {
        /* what GCM wrote before the tag failed is not to be trusted */
        ngx_explicit_memzero(out->data, n + 1);
    }

    return rc;
}


ngx_int_t
ngx_shinsei_crypto_blind_index(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *hex)
{
    u_char        mac[EVP_MAX_MD_SIZE];
    unsigned int  len;

    if (HMAC(EVP_sha256(), ngx_shinsei_crypto_conf->keys->index_key, 32,
             value->data, value->len, mac, &len)
        == NULL)
    {
        return NGX_ERROR;
    }

    hex->data = ngx_pnalloc(pool, 2 * len);
    if (hex->data == NULL) {
        return NGX_ERROR;
    }

    hex->len = ngx_hex_dump(hex->data, mac, len) - hex->data;

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_crypto_token(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *hash_hex)
{
    u_char     raw[32];
    ngx_str_t  src;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return NGX_ERROR;
    }

    token->data = ngx_pnalloc(pool, ngx_base64_encoded_length(sizeof(raw)));
    if (token->data == NULL) {
        return NGX_ERROR;
    }

    src.data = raw;
    src.len = sizeof(raw);

    ngx_encode_base64url(token, &src);
    ngx_explicit_memzero(raw, sizeof(raw));

    return ngx_shinsei_crypto_token_hash(pool, token, hash_hex);
}


ngx_int_t
ngx_shinsei_crypto_token_hash(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *hash_hex)
{
    u_char  digest[EVP_MAX_MD_SIZE];

    hash_hex->data = ngx_pnalloc(pool, 64);
    if (hash_hex->data == NULL) {
        return NGX_ERROR;
    }

    if (EVP_Digest(token->data, token->len, digest, NULL, EVP_sha256(), NULL)
        != 1)
    {
        return NGX_ERROR;
    }

    hash_hex->len = ngx_hex_dump(hash_hex->data, digest, 32)
                    - hash_hex->data;

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_crypto_password_hash(ngx_http_request_t *r, ngx_str_t *password,
    ngx_shinsei_password_done_pt done)
{
    ngx_shinsei_password_t  *pw;

    pw = ngx_pcalloc(r->pool, sizeof(ngx_shinsei_password_t));
    if (pw == NULL) {
        return NGX_ERROR;
    }

    pw->password = *password;
    pw->mode = NGX_SHINSEI_PW_HASH;
    pw->done = done;

    return ngx_shinsei_password_post(r, pw);
}


ngx_int_t
ngx_shinsei_crypto_password_verify(ngx_http_request_t *r, ngx_str_t *password,
    ngx_str_t *stored, ngx_shinsei_password_done_pt done)
{
    ngx_shinsei_password_t  *pw;

    pw = ngx_pcalloc(r->pool, sizeof(ngx_shinsei_password_t));
    if (pw == NULL) {
        return NGX_ERROR;
    }

    /*
     * The NFKC form is what new hashes are of; a hash stored before it
     * was (of the bytes as typed) is tried too, and replaced on success.
     */

    if (ngx_shinsei_string_nfkc(r->pool, password, &pw->password) != NGX_OK) {
        return NGX_ERROR;
    }

    if (pw->password.len != password->len
        || ngx_memcmp(pw->password.data, password->data, password->len) != 0)
    {
        pw->raw = *password;
    }

    pw->short_password = ngx_shinsei_string_chars(&pw->password)
                         < NGX_SHINSEI_PASSWORD_MIN;

    if (stored) {
        pw->stored = *stored;
    }

    pw->mode = NGX_SHINSEI_PW_VERIFY;
    pw->done = done;

    return ngx_shinsei_password_post(r, pw);
}


static ngx_int_t
ngx_shinsei_password_post(ngx_http_request_t *r, ngx_shinsei_password_t *pw)
{
    ngx_thread_task_t        *task;
    ngx_shinsei_main_conf_t  *smcf;

    smcf = ngx_shinsei_crypto_conf;

    /*
     * Finding 9: a flood of logins must not fill the thread pool's queue
     * (every later login would wait behind it): past the budget, the page
     * says to try again later.
     */

    if (ngx_shinsei_crypto_hashing >= smcf->password_budget) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      ngx_shinsei_log_prefix "password check refused: %i "
                      "hashes already running or queued "
                      "(shinsei_password_budget)", ngx_shinsei_crypto_hashing);
        return NGX_BUSY;
    }

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_shinsei_password_t *));
    if (task == NULL) {
        return NGX_ERROR;
    }

    pw->request = r;
    pw->kdf = &smcf->kdf;

    /* a fresh salt, drawn here: the thread touches no shared state */

    if (RAND_bytes(pw->salt, sizeof(pw->salt)) != 1) {
        return NGX_ERROR;
    }

    *(ngx_shinsei_password_t **) task->ctx = pw;

    task->handler = ngx_shinsei_password_thread;
    task->event.handler = ngx_shinsei_password_event;
    task->event.data = pw;

    if (ngx_thread_task_post(smcf->thread_pool, task) != NGX_OK) {
        /* the pool's queue is full: the page says try again later */
        return NGX_BUSY;
    }

    /*
     * the thread writes into the request's memory: the request outlives
     * it, even when its client goes away (nginx waits while blocked);
     * and so does the worker, in a graceful shutdown: it exits once no
     * timer is left that is not cancelable, so one stands for the hash
     */

    pw->running.handler = ngx_shinsei_password_running;
    pw->running.data = pw;
    pw->running.log = r->connection->log;
    ngx_add_timer(&pw->running, NGX_SHINSEI_PW_RUNNING);

    r->main->blocked++;
    ngx_shinsei_crypto_hashing++;

    ngx_shinsei_request_suspend(r, ngx_shinsei_password_resume, pw);

    return NGX_DONE;
}


/* in a thread of the pool: no nginx memory or logging here */

static void
ngx_shinsei_password_thread(void *data, ngx_log_t *log)
{
    ngx_shinsei_password_t  *pw = *(ngx_shinsei_password_t **) data;

    u_char      salt[NGX_SHINSEI_SALT_LEN], hash[NGX_SHINSEI_HASH_LEN];
    u_char      want[NGX_SHINSEI_HASH_LEN], *p;
    ngx_uint_t  ln, r, pp;

#if (NGX_LINUX)
    /* hashing yields to the event loops of the same machine */
    (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), 10);
#endif

    pw->verified = 0;
    pw->hash.len = 0;
    pw->hash.data = pw->out;

    if (pw->mode == NGX_SHINSEI_PW_VERIFY) {

        if (pw->stored.len == 0
            || ngx_shinsei_password_decode(&pw->stored, &ln, &r, &pp, salt,
                                           want)
               != NGX_OK)
        {
            /* no account or no usable hash: the same work, then refuse */
            (void) ngx_shinsei_scrypt(&pw->password, ngx_shinsei_dummy_salt,
                                      pw->kdf->ln, pw->kdf->r, pw->kdf->p,
                                      hash);

            if (pw->raw.len) {
                (void) ngx_shinsei_scrypt(&pw->raw, ngx_shinsei_dummy_salt,
                                          pw->kdf->ln, pw->kdf->r,
                                          pw->kdf->p, hash);
            }

            goto done;
        }

        if (ngx_shinsei_scrypt(&pw->password, salt, ln, r, pp, hash)
            != NGX_OK)
        {
            goto done;
        }

        pw->verified = CRYPTO_memcmp(hash, want, NGX_SHINSEI_HASH_LEN) == 0;

        /* a hash of the bytes as typed, from before NFKC: upgraded */

        if (!pw->verified && pw->raw.len
            && ngx_shinsei_scrypt(&pw->raw, salt, ln, r, pp, hash) == NGX_OK
            && CRYPTO_memcmp(hash, want, NGX_SHINSEI_HASH_LEN) == 0)
        {
            pw->verified = 1;
            pw->raw_matched = 1;
        }

        if (!pw->verified
            || (!pw->raw_matched
                && ln == pw->kdf->ln && r == pw->kdf->r && pp == pw->kdf->p))
        {
            goto done;
        }

        /*
         * stored with older parameters, or of the raw bytes: upgrade
         * while the password is here
         */
    }

    if (ngx_shinsei_scrypt(&pw->password, pw->salt, pw->kdf->ln, pw->kdf->r,
                           pw->kdf->p, hash)
        != NGX_OK)
    {
        goto done;
    }

    p = ngx_shinsei_password_encode(pw->out, pw->kdf->ln, pw->kdf->r,
                                    pw->kdf->p, pw->salt, hash);
    pw->hash.len = p - pw->out;

done:

    ngx_explicit_memzero(pw->password.data, pw->password.len);
    ngx_explicit_memzero(pw->raw.data, pw->raw.len);
    ngx_explicit_memzero(hash, sizeof(hash));

    /*
     * What OpenSSL keeps for this thread (its error queue, 904 bytes) is
     * freed now: nginx's threads outlive OPENSSL_cleanup() at a worker's
     * exit, which forgets the key that held it, and LeakSanitizer then
     * reported it now and then (t/160 under ASan).  The next task makes
     * it again.
     */

    OPENSSL_thread_stop();
}


static void
ngx_shinsei_password_event(ngx_event_t *ev)
{
    ngx_http_request_t      *r;
    ngx_shinsei_password_t  *pw;

    pw = ev->data;
    r = pw->request;

    if (pw->running.timer_set) {
        ngx_del_timer(&pw->running);
    }

    r->main->blocked--;
    ngx_shinsei_crypto_hashing--;

    /* ended meanwhile (client gone, shutdown): the wake frees it */

    ngx_shinsei_request_wake(r);
}


/* never expected: a hash takes well under a second */

static void
ngx_shinsei_password_running(ngx_event_t *ev)
{
    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  ngx_shinsei_log_prefix "a password hash is still running "
                  "after %d s", NGX_SHINSEI_PW_RUNNING / 1000);
}


static ngx_int_t
ngx_shinsei_password_resume(ngx_http_request_t *r, void *data)
{
    ngx_shinsei_password_t *pw = data;

    if (pw->mode == NGX_SHINSEI_PW_HASH && pw->hash.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      ngx_shinsei_log_prefix "password hashing failed");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return pw->done(r, ngx_http_get_module_ctx(r, ngx_shinsei_module), pw);
}


static ngx_int_t
ngx_shinsei_scrypt(ngx_str_t *password, u_char *salt, ngx_uint_t ln,
    ngx_uint_t r, ngx_uint_t p, u_char *out)
{
    int           ok;
    uint32_t      r32, p32;
    uint64_t      n64, maxmem;
    EVP_KDF      *kdf;
    OSSL_PARAM    params[7];
    EVP_KDF_CTX  *kctx;

    if (ngx_shinsei_crypto_kdf_check(ln, r, p) != NGX_OK) {
        return NGX_ERROR;
    }

    n64 = (uint64_t) 1 << ln;

    r32 = (uint32_t) r;
    p32 = (uint32_t) p;
    maxmem = (uint64_t) 129 * r * n64 + (uint64_t) 1024 * 1024;

    kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    if (kdf == NULL) {
        return NGX_ERROR;
    }

    kctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);

    if (kctx == NULL) {
        return NGX_ERROR;
    }

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                                  password->data,
                                                  password->len);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt,
                                                  NGX_SHINSEI_SALT_LEN);
    params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n64);
    params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32);
    params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32);
    params[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM,
                                            &maxmem);
    params[6] = OSSL_PARAM_construct_end();

    ok = EVP_KDF_derive(kctx, out, NGX_SHINSEI_HASH_LEN, params);

    EVP_KDF_CTX_free(kctx);

    return ok == 1 ? NGX_OK : NGX_ERROR;
}


/*
 * The bounds of the configuration and of every stored hash: a tampered hash
 * must not cost the server its memory or its threads.  At most 256 MiB per
 * hash, and at most 16 times the work of ln=17 r=8 p=1.
 */

ngx_int_t
ngx_shinsei_crypto_kdf_check(ngx_uint_t ln, ngx_uint_t r, ngx_uint_t p)
{
    uint64_t  n64;

    if (ln < 10 || ln > 20 || r < 1 || r > 32 || p < 1 || p > 16) {
        return NGX_ERROR;
    }

    n64 = (uint64_t) 1 << ln;

    if ((uint64_t) 128 * r * n64 > (uint64_t) 256 * 1024 * 1024
        || n64 * r * p > ((uint64_t) 1 << 24))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static u_char *
ngx_shinsei_password_encode(u_char *dst, ngx_uint_t ln, ngx_uint_t r,
    ngx_uint_t p, u_char *salt, u_char *hash)
{
    ngx_str_t  src, out;

    dst = ngx_sprintf(dst, "$scrypt$ln=%ui,r=%ui,p=%ui$", ln, r, p);

    src.data = salt;
    src.len = NGX_SHINSEI_SALT_LEN;
    out.data = dst;
    ngx_encode_base64(&out, &src);
    dst += out.len;

    *dst++ = '$';

    src.data = hash;
    src.len = NGX_SHINSEI_HASH_LEN;
    out.data = dst;
    ngx_encode_base64(&out, &src);

    return dst + out.len;
}


static ngx_int_t
ngx_shinsei_password_decode(ngx_str_t *stored, ngx_uint_t *ln,
    ngx_uint_t *r, ngx_uint_t *p, u_char *salt, u_char *hash)
{
    u_char     *s, *last, *dollar;
    ngx_int_t   v[3];
    ngx_str_t   b64, raw;
    ngx_uint_t  i;
    u_char      buf[64];

    s = stored->data;
    last = s + stored->len;

    if (stored->len < 16 || ngx_strncmp(s, "$scrypt$ln=", 11) != 0) {
        return NGX_ERROR;
    }

    s += 11;

    for (i = 0; i < 3; i++) {
        if (i == 1 || i == 2) {
            if (last - s < 3 || s[1] != '=') {
                return NGX_ERROR;
            }

            s += 2;
        }

        v[i] = 0;

        while (s < last && *s >= '0' && *s <= '9' && v[i] < 100) {
            v[i] = v[i] * 10 + (*s++ - '0');
        }

        if (s == last || (i < 2 && *s != ',') || (i == 2 && *s != '$')) {
            return NGX_ERROR;
        }

        s++;
    }

    /* out of bounds (tampered): refused like a missing hash, same work */

    if (ngx_shinsei_crypto_kdf_check(v[0], v[1], v[2]) != NGX_OK) {
        return NGX_ERROR;
    }

    *ln = v[0];
    *r = v[1];
    *p = v[2];

    dollar = ngx_strlchr(s, last, '$');
    if (dollar == NULL) {
        return NGX_ERROR;
    }

    b64.data = s;
    b64.len = dollar - s;
    raw.data = buf;

    if (b64.len > 40 || ngx_decode_base64(&raw, &b64) != NGX_OK
        || raw.len != NGX_SHINSEI_SALT_LEN)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(salt, buf, NGX_SHINSEI_SALT_LEN);

    b64.data = dollar + 1;
    b64.len = last - b64.data;

    if (b64.len > 60 || ngx_decode_base64(&raw, &b64) != NGX_OK
        || raw.len != NGX_SHINSEI_HASH_LEN)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(hash, buf, NGX_SHINSEI_HASH_LEN);

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_hex_key(ngx_str_t *hex, u_char *key)
{
    ngx_int_t   n;
    ngx_uint_t  i;

    if (hex->len != 64) {
        return NGX_ERROR;
    }

    for (i = 0; i < 32; i++) {
        n = ngx_hextoi(hex->data + 2 * i, 2);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        key[i] = (u_char) n;
    }

    return NGX_OK;
}


static ngx_shinsei_data_key_t *
ngx_shinsei_find_key(ngx_str_t *id)
{
    ngx_uint_t               i;
    ngx_shinsei_keys_t      *keys;
    ngx_shinsei_data_key_t  *k;

    keys = ngx_shinsei_crypto_conf->keys;
    k = keys->keys.elts;

    for (i = 0; i < keys->keys.nelts; i++) {
        if (k[i].id.len == id->len
            && ngx_strncmp(k[i].id.data, id->data, id->len) == 0)
        {
            return &k[i];
        }
    }

    return NULL;
}
