
/*
 * Copyright (C) ngx_shinsei developers
 *
 * shinsei_assets dir url-prefix;
 *
 * Static files under names that change with their content.  At
 * configuration load every file below dir is hashed (SHA-256, the first
 * ten hex digits), and css/site.css becomes /static/css/site.<hash>.css.
 * Templates ask for these names when they are compiled ({{@css/site.css}},
 * ngx_shinsei_tmpl.c), so nginx can let browsers keep the files for a
 * year: a changed file is a new URL.  nginx serves the hashed names from
 * the real files (conf/citizen-katsuragi.conf).
 *
 * A name.gz next to a file is its precompressed copy for gzip_static, not
 * an asset of its own.  One whose content is not the file's fails the
 * load: nginx would serve the old content under the new name, and
 * browsers would keep it.  Hidden files and files without an extension
 * get no hashed name.
 */


#include "ngx_shinsei_assets.h"

#include <openssl/evp.h>
#include <zlib.h>


#define NGX_SHINSEI_ASSETS_HASH_LEN   10
#define NGX_SHINSEI_ASSETS_BUF_SIZE   65536


typedef struct {
    ngx_str_t                    path;       /* css/site.css */
    ngx_str_t                    url;        /* /static/css/site.<hash>.css */
} ngx_shinsei_asset_t;


struct ngx_shinsei_assets_s {
    ngx_str_t                    dir;
    ngx_str_t                    prefix;
    ngx_array_t                  files;      /* ngx_shinsei_asset_t */
};


typedef struct {
    ngx_conf_t                  *cf;
    ngx_shinsei_assets_t        *assets;
    u_char                      *in;
    u_char                      *out;        /* of inflate() */
} ngx_shinsei_assets_walk_t;


static ngx_int_t ngx_shinsei_assets_noop(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static ngx_int_t ngx_shinsei_assets_enter(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static ngx_int_t ngx_shinsei_assets_file(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static ngx_int_t ngx_shinsei_assets_digest(ngx_shinsei_assets_walk_t *w,
    ngx_str_t *path, ngx_uint_t gzipped, u_char *md);


char *
ngx_shinsei_assets_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_shinsei_main_conf_t *smcf = conf;

    u_char                     *p;
    ngx_int_t                   rc;
    ngx_str_t                  *value, *prefix;
    ngx_tree_ctx_t              tree;
    ngx_shinsei_assets_t       *assets;
    ngx_shinsei_assets_walk_t   w;

    if (smcf->assets) {
        return "is duplicate";
    }

    value = cf->args->elts;

    assets = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_assets_t));
    if (assets == NULL) {
        return NGX_CONF_ERROR;
    }

    assets->dir = value[1];

    if (ngx_conf_full_name(cf->cycle, &assets->dir, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (assets->dir.len > 1
           && assets->dir.data[assets->dir.len - 1] == '/')
    {
        assets->dir.len--;
    }

    /* the prefix goes into pages as it is: a path, nothing to escape */

    prefix = &value[2];

    if (prefix->len == 0 || prefix->data[0] != '/'
        || prefix->data[prefix->len - 1] != '/')
    {
        goto invalid;
    }

    for (p = prefix->data; p < prefix->data + prefix->len; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\''
            || *p == '<' || *p == '>' || *p == '?' || *p == '#'
            || *p == '\\')
        {
            goto invalid;
        }
    }

    assets->prefix = *prefix;

    if (ngx_array_init(&assets->files, cf->pool, 16,
                       sizeof(ngx_shinsei_asset_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    w.cf = cf;
    w.assets = assets;
    w.in = ngx_pnalloc(cf->temp_pool, NGX_SHINSEI_ASSETS_BUF_SIZE);
    w.out = ngx_pnalloc(cf->temp_pool, NGX_SHINSEI_ASSETS_BUF_SIZE);

    if (w.in == NULL || w.out == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&tree, sizeof(ngx_tree_ctx_t));
    tree.file_handler = ngx_shinsei_assets_file;
    tree.pre_tree_handler = ngx_shinsei_assets_enter;
    tree.post_tree_handler = ngx_shinsei_assets_noop;
    tree.spec_handler = ngx_shinsei_assets_noop;
    tree.data = &w;
    tree.log = cf->log;

    rc = ngx_walk_tree(&tree, &assets->dir);

    if (rc == NGX_ABORT) {
        /* the file at fault was named */
        return NGX_CONF_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"shinsei_assets\": cannot read \"%V\"",
                           &assets->dir);
        return NGX_CONF_ERROR;
    }

    smcf->assets = assets;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"shinsei_assets\": the URL prefix \"%V\" must be a "
                       "path that starts and ends with \"/\"", &value[2]);

    return NGX_CONF_ERROR;
}


ngx_str_t *
ngx_shinsei_assets_url(ngx_shinsei_assets_t *assets, ngx_str_t *path)
{
    ngx_uint_t            i;
    ngx_shinsei_asset_t  *a;

    a = assets->files.elts;

    for (i = 0; i < assets->files.nelts; i++) {
        if (a[i].path.len == path->len
            && ngx_strncmp(a[i].path.data, path->data, path->len) == 0)
        {
            return &a[i].url;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_shinsei_assets_noop(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    return NGX_OK;
}


/* hidden directories (.git and the like) are not served */

static ngx_int_t
ngx_shinsei_assets_enter(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    u_char  *p;

    for (p = path->data + path->len; p > path->data; p--) {
        if (p[-1] == '/') {
            break;
        }
    }

    return (*p == '.') ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
ngx_shinsei_assets_file(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    u_char                     *p, *base, *dot, *last;
    u_char                      md[32], gz_md[32];
    ngx_int_t                   rc;
    ngx_str_t                   rel, gz;
    ngx_shinsei_asset_t        *a;
    ngx_shinsei_assets_t       *assets;
    ngx_shinsei_assets_walk_t  *w;

    w = ctx->data;
    assets = w->assets;

    /* the name is the path below the directory */

    rel.data = path->data + assets->dir.len;

    while (*rel.data == '/') {
        rel.data++;
    }

    rel.len = path->data + path->len - rel.data;
    last = rel.data + rel.len;

    for (base = last; base > rel.data && base[-1] != '/'; base--) {
        /* void */
    }

    if (*base == '.') {
        return NGX_OK;
    }

    /* a precompressed copy is checked with its file */

    if (last - base > 3 && ngx_strncmp(last - 3, ".gz", 3) == 0) {
        return NGX_OK;
    }

    dot = NULL;

    for (p = base; p < last; p++) {
        if (*p == '.') {
            dot = p;
        }
    }

    if (dot == NULL) {
        return NGX_OK;
    }

    /* the name goes into URLs and templates unescaped */

    for (p = rel.data; p < last; p++) {
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z')
            && !(*p >= '0' && *p <= '9')
            && *p != '_' && *p != '.' && *p != '/' && *p != '-')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, w->cf, 0,
                               "\"shinsei_assets\": the name \"%V\" has "
                               "characters other than a-z, A-Z, 0-9, \".\", "
                               "\"_\", \"-\" and \"/\"", &rel);
            return NGX_ABORT;
        }
    }

    if (ngx_shinsei_assets_digest(w, path, 0, md) != NGX_OK) {
        return NGX_ABORT;
    }

    gz.len = path->len + 3;
    gz.data = ngx_pnalloc(w->cf->temp_pool, gz.len + 1);
    if (gz.data == NULL) {
        return NGX_ABORT;
    }

    ngx_sprintf(gz.data, "%V.gz%Z", path);

    rc = ngx_shinsei_assets_digest(w, &gz, 1, gz_md);

    if (rc == NGX_ERROR) {
        return NGX_ABORT;
    }

    if (rc == NGX_OK && ngx_memcmp(md, gz_md, 32) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, w->cf, 0,
                           "\"shinsei_assets\": \"%V\" is not a compressed "
                           "copy of \"%V\" as it is now: gzip_static would "
                           "serve the old content; compress it again "
                           "(./build.sh build) or remove it", &gz, path);
        return NGX_ABORT;
    }

    a = ngx_array_push(&assets->files);
    if (a == NULL) {
        return NGX_ABORT;
    }

    a->path.len = rel.len;
    a->path.data = ngx_pstrdup(w->cf->pool, &rel);

    a->url.len = assets->prefix.len + rel.len + 1 + NGX_SHINSEI_ASSETS_HASH_LEN;
    a->url.data = ngx_pnalloc(w->cf->pool, a->url.len);

    if (a->path.data == NULL || a->url.data == NULL) {
        return NGX_ABORT;
    }

    p = ngx_cpymem(a->url.data, assets->prefix.data, assets->prefix.len);
    p = ngx_cpymem(p, rel.data, dot - rel.data);
    *p++ = '.';
    p = ngx_hex_dump(p, md, NGX_SHINSEI_ASSETS_HASH_LEN / 2);
    ngx_memcpy(p, dot, last - dot);

    return NGX_OK;
}


/*
 * The SHA-256 of a file, or of what a gzip file holds (RFC 1952, one
 * member, as "gzip -n" writes it).  NGX_DECLINED: there is no such gzip
 * file.
 */

static ngx_int_t
ngx_shinsei_assets_digest(ngx_shinsei_assets_walk_t *w, ngx_str_t *path,
    ngx_uint_t gzipped, u_char *md)
{
    int          zrc;
    off_t        offset;
    ssize_t      n;
    z_stream     zs;
    ngx_err_t    err;
    ngx_int_t    rc;
    ngx_uint_t   inflating, ended;
    ngx_file_t   file;
    EVP_MD_CTX  *sha;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *path;
    file.log = w->cf->log;

    file.fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        err = ngx_errno;

        if (gzipped && err == NGX_ENOENT) {
            return NGX_DECLINED;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, w->cf, err,
                           "\"shinsei_assets\": " ngx_open_file_n
                           " \"%V\" failed", path);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    inflating = 0;
    ended = 0;

    sha = EVP_MD_CTX_new();

    if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        goto failed;
    }

    if (gzipped) {
        ngx_memzero(&zs, sizeof(z_stream));

        /* MAX_WBITS + 16: a gzip header and trailer, not zlib's */

        if (inflateInit2(&zs, MAX_WBITS + 16) != Z_OK) {
            goto failed;
        }

        inflating = 1;
    }

    for (offset = 0; /* void */ ; offset += n) {

        n = ngx_read_file(&file, w->in, NGX_SHINSEI_ASSETS_BUF_SIZE, offset);

        if (n == NGX_ERROR) {
            goto done;
        }

        if (n == 0) {
            break;
        }

        if (!gzipped) {
            if (EVP_DigestUpdate(sha, w->in, n) != 1) {
                goto failed;
            }

            continue;
        }

        if (ended) {
            goto corrupt;
        }

        zs.next_in = w->in;
        zs.avail_in = n;

        do {
            zs.next_out = w->out;
            zs.avail_out = NGX_SHINSEI_ASSETS_BUF_SIZE;

            zrc = inflate(&zs, Z_NO_FLUSH);

            if (zrc == Z_BUF_ERROR) {
                break;                  /* it needs more input */
            }

            if (zrc != Z_OK && zrc != Z_STREAM_END) {
                goto corrupt;
            }

            if (EVP_DigestUpdate(sha, w->out,
                                 NGX_SHINSEI_ASSETS_BUF_SIZE - zs.avail_out)
                != 1)
            {
                goto failed;
            }

            if (zrc == Z_STREAM_END) {
                if (zs.avail_in) {
                    goto corrupt;
                }

                ended = 1;
                break;
            }

        } while (zs.avail_in || zs.avail_out == 0);
    }

    if (gzipped && !ended) {
        goto corrupt;
    }

    if (EVP_DigestFinal_ex(sha, md, NULL) != 1) {
        goto failed;
    }

    rc = NGX_OK;
    goto done;

corrupt:

    ngx_conf_log_error(NGX_LOG_EMERG, w->cf, 0,
                       "\"shinsei_assets\": \"%V\" is not a whole gzip file "
                       "of one member", path);
    goto done;

failed:

    ngx_conf_log_error(NGX_LOG_EMERG, w->cf, 0,
                       "\"shinsei_assets\": cannot hash \"%V\" "
                       "(OpenSSL or zlib failed)", path);

done:

    if (inflating) {
        inflateEnd(&zs);
    }

    EVP_MD_CTX_free(sha);
    ngx_close_file(file.fd);

    return rc;
}
