
/*
 * Copyright (C) ngx_shinsei developers
 *
 * Templates: a Mustache subset compiled once, at configuration load, into
 * a flat list of operations per page.  Partials, and layouts by Mustache's
 * inheritance ({{< layout}} with {{$block}} overrides), are inlined at
 * compile time, so rendering does no parsing and no file I/O.
 *
 * Every value is HTML-escaped in .html templates.  The only unescaped
 * output is {{& name_html}}: the name must end in "_html", which the
 * module uses only for HTML it produced itself.
 *
 * One tag is not Mustache's: {{@css/site.css}} is the URL of a static
 * file under the name that changes with its content
 * (/static/css/site.<hash>.css, shinsei_assets, ngx_shinsei_assets.c).
 * It is replaced by text when the template is compiled, so it costs
 * nothing at rendering; an unknown file fails the load.
 */


#include "ngx_shinsei_tmpl.h"
#include "ngx_shinsei_assets.h"


#define NGX_SHINSEI_TMPL_MAX_DEPTH     32
#define NGX_SHINSEI_TMPL_MAX_INCLUDE   16
#define NGX_SHINSEI_TMPL_BUF_SIZE      16384


typedef enum {
    NGX_SHINSEI_TMPL_TEXT = 0,
    NGX_SHINSEI_TMPL_VAR,
    NGX_SHINSEI_TMPL_RAW,
    NGX_SHINSEI_TMPL_SECTION,
    NGX_SHINSEI_TMPL_INVERTED,
    NGX_SHINSEI_TMPL_END
} ngx_shinsei_tmpl_op_type_e;


typedef struct {
    ngx_shinsei_tmpl_op_type_e   type;
    ngx_str_t                    text;
    char                       **path;
    ngx_uint_t                   npath;
    ngx_uint_t                   jump;
} ngx_shinsei_tmpl_op_t;


struct ngx_shinsei_tmpl_s {
    ngx_str_t                    name;
    ngx_array_t                  ops;
    ngx_uint_t                   html;
};


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    text;
    ngx_uint_t                   html;
} ngx_shinsei_tmpl_file_t;


struct ngx_shinsei_tmpl_set_s {
    ngx_str_t                    dir;
    ngx_array_t                  files;      /* ngx_shinsei_tmpl_file_t */
    ngx_array_t                  templates;  /* ngx_shinsei_tmpl_t */
    ngx_shinsei_assets_t        *assets;     /* NULL: no shinsei_assets */
};


typedef struct {
    ngx_shinsei_tmpl_file_t     *file;
    u_char                      *pos;
    u_char                      *end;
} ngx_shinsei_tmpl_src_t;


typedef struct {
    ngx_str_t                    name;
    ngx_shinsei_tmpl_src_t       body;
} ngx_shinsei_tmpl_block_t;


typedef struct {
    u_char                       sigil;
    ngx_str_t                    name;
    u_char                      *start;
} ngx_shinsei_tmpl_tag_t;


typedef struct {
    ngx_conf_t                  *cf;
    ngx_shinsei_tmpl_set_t      *set;
    ngx_shinsei_tmpl_t          *tmpl;
    ngx_uint_t                   depth;
} ngx_shinsei_tmpl_compiler_t;


typedef struct {
    ngx_pool_t                  *pool;
    ngx_chain_t                 *out;
    ngx_chain_t                **last;
    ngx_buf_t                   *buf;
    off_t                        size;
    ngx_uint_t                   html;
    ngx_uint_t                   depth;
    cJSON                       *stack[NGX_SHINSEI_TMPL_MAX_DEPTH];
} ngx_shinsei_tmpl_out_t;


static ngx_int_t ngx_shinsei_tmpl_noop(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static ngx_int_t ngx_shinsei_tmpl_read_file(ngx_tree_ctx_t *ctx,
    ngx_str_t *path);
static ngx_int_t ngx_shinsei_tmpl_compile(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, ngx_array_t *blocks);
static ngx_int_t ngx_shinsei_tmpl_scan(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, u_char **pos, ngx_str_t *text,
    ngx_shinsei_tmpl_tag_t *tag);
static ngx_int_t ngx_shinsei_tmpl_skip(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, u_char **pos, ngx_shinsei_tmpl_tag_t *open,
    ngx_shinsei_tmpl_src_t *body);
static ngx_int_t ngx_shinsei_tmpl_inherit(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *body, ngx_shinsei_tmpl_tag_t *tag,
    ngx_array_t *outer);
static ngx_shinsei_tmpl_op_t *ngx_shinsei_tmpl_add_op(
    ngx_shinsei_tmpl_compiler_t *cmp, ngx_shinsei_tmpl_op_type_e type,
    ngx_str_t *name);
static ngx_shinsei_tmpl_file_t *ngx_shinsei_tmpl_file(
    ngx_shinsei_tmpl_set_t *set, ngx_str_t *name);
static void ngx_shinsei_tmpl_error(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, u_char *at, const char *fmt, ngx_str_t *arg);
static ngx_int_t ngx_shinsei_tmpl_run(ngx_shinsei_tmpl_out_t *o,
    ngx_shinsei_tmpl_op_t *ops, ngx_uint_t from, ngx_uint_t to);
static cJSON *ngx_shinsei_tmpl_lookup(ngx_shinsei_tmpl_out_t *o,
    ngx_shinsei_tmpl_op_t *op);
static ngx_uint_t ngx_shinsei_tmpl_truthy(cJSON *v);
static ngx_int_t ngx_shinsei_tmpl_value(ngx_shinsei_tmpl_out_t *o, cJSON *v,
    ngx_uint_t escape);
static ngx_int_t ngx_shinsei_tmpl_write(ngx_shinsei_tmpl_out_t *o,
    u_char *p, size_t len);
static ngx_int_t ngx_shinsei_tmpl_write_escaped(ngx_shinsei_tmpl_out_t *o,
    u_char *p, size_t len);


ngx_shinsei_tmpl_set_t *
ngx_shinsei_tmpl_load(ngx_conf_t *cf, ngx_str_t *dir,
    ngx_shinsei_assets_t *assets)
{
    ngx_uint_t                    i;
    ngx_tree_ctx_t                tree;
    ngx_shinsei_tmpl_t           *t;
    ngx_shinsei_tmpl_set_t       *set;
    ngx_shinsei_tmpl_src_t        src;
    ngx_shinsei_tmpl_file_t      *f;
    ngx_shinsei_tmpl_compiler_t   cmp;

    set = ngx_pcalloc(cf->pool, sizeof(ngx_shinsei_tmpl_set_t));
    if (set == NULL) {
        return NULL;
    }

    set->dir = *dir;
    set->assets = assets;

    if (ngx_array_init(&set->files, cf->pool, 32,
                       sizeof(ngx_shinsei_tmpl_file_t))
        != NGX_OK
        || ngx_array_init(&set->templates, cf->pool, 32,
                          sizeof(ngx_shinsei_tmpl_t))
           != NGX_OK)
    {
        return NULL;
    }

    ngx_memzero(&tree, sizeof(ngx_tree_ctx_t));
    tree.file_handler = ngx_shinsei_tmpl_read_file;
    tree.pre_tree_handler = ngx_shinsei_tmpl_noop;
    tree.post_tree_handler = ngx_shinsei_tmpl_noop;
    tree.spec_handler = ngx_shinsei_tmpl_noop;
    tree.data = set;
    tree.log = cf->log;

    if (ngx_walk_tree(&tree, dir) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           ngx_shinsei_log_prefix "cannot read templates "
                           "from \"%V\"", dir);
        return NULL;
    }

    f = set->files.elts;

    for (i = 0; i < set->files.nelts; i++) {

        /* partials and layouts are compiled into the pages using them */

        if ((f[i].name.len > 9
             && ngx_strncmp(f[i].name.data, "partials/", 9) == 0)
            || (f[i].name.len > 8
                && ngx_strncmp(f[i].name.data, "layouts/", 8) == 0))
        {
            continue;
        }

        t = ngx_array_push(&set->templates);
        if (t == NULL) {
            return NULL;
        }

        t->name = f[i].name;
        t->html = f[i].html;

        if (ngx_array_init(&t->ops, cf->pool, 64,
                           sizeof(ngx_shinsei_tmpl_op_t))
            != NGX_OK)
        {
            return NULL;
        }

        cmp.cf = cf;
        cmp.set = set;
        cmp.tmpl = t;
        cmp.depth = 0;

        src.file = &f[i];
        src.pos = f[i].text.data;
        src.end = f[i].text.data + f[i].text.len;

        if (ngx_shinsei_tmpl_compile(&cmp, &src, NULL) != NGX_OK) {
            return NULL;
        }
    }

    return set;
}


ngx_shinsei_tmpl_t *
ngx_shinsei_tmpl_find(ngx_shinsei_tmpl_set_t *set, ngx_str_t *name)
{
    ngx_uint_t           i;
    ngx_shinsei_tmpl_t  *t;

    t = set->templates.elts;

    for (i = 0; i < set->templates.nelts; i++) {
        if (t[i].name.len == name->len
            && ngx_strncmp(t[i].name.data, name->data, name->len) == 0)
        {
            return &t[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_shinsei_tmpl_render(ngx_shinsei_tmpl_t *t, cJSON *data,
    ngx_pool_t *pool, ngx_chain_t **out, off_t *size)
{
    ngx_shinsei_tmpl_out_t  o;

    ngx_memzero(&o, sizeof(ngx_shinsei_tmpl_out_t));

    o.pool = pool;
    o.last = &o.out;
    o.html = t->html;
    o.stack[0] = data;
    o.depth = 1;

    if (ngx_shinsei_tmpl_run(&o, t->ops.elts, 0, t->ops.nelts) != NGX_OK) {
        return NGX_ERROR;
    }

    if (o.out == NULL) {
        /* an empty page still needs a buffer to carry last_buf */
        if (ngx_shinsei_tmpl_write(&o, (u_char *) "", 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    *out = o.out;
    *size = o.size;

    return NGX_OK;
}


ngx_int_t
ngx_shinsei_tmpl_render_str(ngx_shinsei_tmpl_t *t, cJSON *data,
    ngx_pool_t *pool, ngx_str_t *out)
{
    u_char       *p;
    off_t         size;
    ngx_chain_t  *cl;

    if (ngx_shinsei_tmpl_render(t, data, pool, &cl, &size) != NGX_OK) {
        return NGX_ERROR;
    }

    if (cl->next == NULL) {
        out->data = cl->buf->pos;
        out->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    out->data = ngx_pnalloc(pool, size);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;

    for ( /* void */ ; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_tmpl_noop(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_tmpl_read_file(ngx_tree_ctx_t *ctx, ngx_str_t *path)
{
    u_char                   *ext;
    ssize_t                   n;
    ngx_str_t                 name;
    ngx_uint_t                html;
    ngx_file_t                file;
    ngx_shinsei_tmpl_set_t   *set;
    ngx_shinsei_tmpl_file_t  *f;

    set = ctx->data;

    if (path->len > 5
        && ngx_strncmp(path->data + path->len - 5, ".html", 5) == 0)
    {
        html = 1;

    } else if (path->len > 4
               && ngx_strncmp(path->data + path->len - 4, ".txt", 4) == 0)
    {
        html = 0;

    } else {
        return NGX_OK;
    }

    ext = path->data + path->len - (html ? 5 : 4);

    /* the name is the path below the directory, without the extension */

    name.data = path->data + set->dir.len;

    while (*name.data == '/') {
        name.data++;
    }

    name.len = ext - name.data;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *path;
    file.log = ctx->log;

    file.fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, ctx->log, ngx_errno,
                      ngx_open_file_n " \"%V\" failed", path);
        return NGX_ABORT;
    }

    f = ngx_array_push(&set->files);
    if (f == NULL) {
        goto failed;
    }

    f->html = html;
    f->name.len = name.len;
    f->name.data = ngx_pstrdup(set->files.pool, &name);
    f->text.len = ctx->size;
    f->text.data = ngx_pnalloc(set->files.pool, ctx->size + 1);

    if (f->name.data == NULL || f->text.data == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, f->text.data, ctx->size, 0);

    if (n != (ssize_t) ctx->size) {
        ngx_log_error(NGX_LOG_EMERG, ctx->log, 0,
                      ngx_shinsei_log_prefix "short read of \"%V\"", path);
        goto failed;
    }

    f->text.data[n] = '\0';

    ngx_close_file(file.fd);

    return NGX_OK;

failed:

    ngx_close_file(file.fd);

    return NGX_ABORT;
}


static ngx_int_t
ngx_shinsei_tmpl_compile(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, ngx_array_t *blocks)
{
    u_char                    *pos;
    ngx_int_t                  rc;
    ngx_str_t                  text, name, *url;
    ngx_uint_t                 i, n, sp;
    ngx_shinsei_tmpl_op_t     *op;
    ngx_shinsei_tmpl_tag_t     tag, opened[NGX_SHINSEI_TMPL_MAX_DEPTH];
    ngx_shinsei_tmpl_src_t     body, inc;
    ngx_shinsei_tmpl_file_t   *f;
    ngx_shinsei_tmpl_block_t  *b;
    ngx_uint_t                 index[NGX_SHINSEI_TMPL_MAX_DEPTH];

    if (++cmp->depth > NGX_SHINSEI_TMPL_MAX_INCLUDE) {
        ngx_shinsei_tmpl_error(cmp, src, src->pos,
                               "partials or layouts nested too deep", NULL);
        return NGX_ERROR;
    }

    pos = src->pos;
    sp = 0;

    for ( ;; ) {

        rc = ngx_shinsei_tmpl_scan(cmp, src, &pos, &text, &tag);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (text.len) {
            op = ngx_shinsei_tmpl_add_op(cmp, NGX_SHINSEI_TMPL_TEXT, NULL);
            if (op == NULL) {
                return NGX_ERROR;
            }

            op->text = text;
        }

        if (rc == NGX_DONE) {
            break;
        }

        switch (tag.sigil) {

        case '!':
            break;

        case 'v':
        case '&':
            if (tag.sigil == '&'
                && (tag.name.len < 6
                    || ngx_strncmp(tag.name.data + tag.name.len - 5,
                                   "_html", 5) != 0))
            {
                ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                       "unescaped output \"%V\" must be "
                                       "named *_html", &tag.name);
                return NGX_ERROR;
            }

            if (ngx_shinsei_tmpl_add_op(cmp, tag.sigil == '&'
                                             ? NGX_SHINSEI_TMPL_RAW
                                             : NGX_SHINSEI_TMPL_VAR,
                                        &tag.name)
                == NULL)
            {
                return NGX_ERROR;
            }

            break;

        case '#':
        case '^':
            if (sp == NGX_SHINSEI_TMPL_MAX_DEPTH) {
                ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                       "sections nested too deep", NULL);
                return NGX_ERROR;
            }

            index[sp] = cmp->tmpl->ops.nelts;
            opened[sp++] = tag;

            if (ngx_shinsei_tmpl_add_op(cmp, tag.sigil == '#'
                                             ? NGX_SHINSEI_TMPL_SECTION
                                             : NGX_SHINSEI_TMPL_INVERTED,
                                        &tag.name)
                == NULL)
            {
                return NGX_ERROR;
            }

            break;

        case '/':
            if (sp == 0) {
                ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                       "\"%V\" closes nothing", &tag.name);
                return NGX_ERROR;
            }

            sp--;

            if (opened[sp].name.len != tag.name.len
                || ngx_strncmp(opened[sp].name.data, tag.name.data,
                               tag.name.len) != 0)
            {
                ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                       "\"%V\" closes another section",
                                       &tag.name);
                return NGX_ERROR;
            }

            if (ngx_shinsei_tmpl_add_op(cmp, NGX_SHINSEI_TMPL_END, &tag.name)
                == NULL)
            {
                return NGX_ERROR;
            }

            op = cmp->tmpl->ops.elts;
            op[index[sp]].jump = cmp->tmpl->ops.nelts;
            break;

        case '@':
            if (cmp->set->assets == NULL) {
                ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                       "the static file \"%V\" needs "
                                       "\"shinsei_assets\" in the http "
                                       "block", &tag.name);
                return NGX_ERROR;
            }

            url = ngx_shinsei_assets_url(cmp->set->assets, &tag.name);
            if (url == NULL) {
                ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                       "no static file \"%V\" in the "
                                       "shinsei_assets directory",
                                       &tag.name);
                return NGX_ERROR;
            }

            op = ngx_shinsei_tmpl_add_op(cmp, NGX_SHINSEI_TMPL_TEXT, NULL);
            if (op == NULL) {
                return NGX_ERROR;
            }

            op->text = *url;
            break;

        case '>':
            f = ngx_shinsei_tmpl_file(cmp->set, &tag.name);
            if (f == NULL) {
                ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                       "no partial \"%V\"", &tag.name);
                return NGX_ERROR;
            }

            inc.file = f;
            inc.pos = f->text.data;
            inc.end = f->text.data + f->text.len;

            if (ngx_shinsei_tmpl_compile(cmp, &inc, blocks) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        case '$':
            if (ngx_shinsei_tmpl_skip(cmp, src, &pos, &tag, &body)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (blocks) {
                b = blocks->elts;
                n = blocks->nelts;

                for (i = 0; i < n; i++) {
                    name = b[i].name;

                    if (name.len == tag.name.len
                        && ngx_strncmp(name.data, tag.name.data, name.len)
                           == 0)
                    {
                        body = b[i].body;
                        break;
                    }
                }
            }

            if (ngx_shinsei_tmpl_compile(cmp, &body, blocks) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        case '<':
            if (ngx_shinsei_tmpl_skip(cmp, src, &pos, &tag, &body)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (ngx_shinsei_tmpl_inherit(cmp, &body, &tag, blocks)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            break;

        default:
            ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                   "unsupported tag \"%V\"", &tag.name);
            return NGX_ERROR;
        }
    }

    if (sp) {
        ngx_shinsei_tmpl_error(cmp, src, opened[sp - 1].start,
                               "section \"%V\" is not closed",
                               &opened[sp - 1].name);
        return NGX_ERROR;
    }

    cmp->depth--;

    return NGX_OK;
}


/*
 * Scans the text up to the next tag.  Standalone tags (a section, a
 * comment, a partial or a block alone on its line) take their line with
 * them, as in the Mustache specification, so text templates (mails) come
 * out without stray blank lines.
 */

static ngx_int_t
ngx_shinsei_tmpl_scan(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, u_char **pos, ngx_str_t *text,
    ngx_shinsei_tmpl_tag_t *tag)
{
    u_char  *p, *q, *ls, *le, *start;

    start = *pos;
    text->data = start;

    p = start;

    for ( ;; ) {
        if (p + 1 >= src->end) {
            text->len = src->end - start;
            *pos = src->end;
            return NGX_DONE;
        }

        if (p[0] == '{' && p[1] == '{') {
            break;
        }

        p++;
    }

    tag->start = p;

    if (p + 2 < src->end && p[2] == '{') {
        ngx_shinsei_tmpl_error(cmp, src, p, "triple mustaches are not "
                               "supported, use {{& name_html}}", NULL);
        return NGX_ERROR;
    }

    for (q = p + 2; q + 1 < src->end; q++) {
        if (q[0] == '}' && q[1] == '}') {
            break;
        }
    }

    if (q + 1 >= src->end) {
        ngx_shinsei_tmpl_error(cmp, src, p, "tag is not closed", NULL);
        return NGX_ERROR;
    }

    le = q + 2;
    p += 2;

    while (p < q && (*p == ' ' || *p == '\t')) {
        p++;
    }

    switch (*p) {

    case '#': case '^': case '/': case '>': case '!': case '$': case '<':
    case '&': case '=': case '@':
        tag->sigil = *p++;
        break;

    default:
        tag->sigil = 'v';
    }

    while (p < q && (*p == ' ' || *p == '\t')) {
        p++;
    }

    tag->name.data = p;

    while (q > p && (q[-1] == ' ' || q[-1] == '\t')) {
        q--;
    }

    tag->name.len = q - p;

    if (tag->sigil == '=') {
        ngx_shinsei_tmpl_error(cmp, src, tag->start, "unsupported tag: "
                               "delimiters cannot be changed", NULL);
        return NGX_ERROR;
    }

    if (tag->sigil != '!') {

        if (tag->name.len == 0) {
            ngx_shinsei_tmpl_error(cmp, src, tag->start, "empty tag", NULL);
            return NGX_ERROR;
        }

        for (q = tag->name.data; q < tag->name.data + tag->name.len; q++) {
            if (!(*q >= 'a' && *q <= 'z') && !(*q >= 'A' && *q <= 'Z')
                && !(*q >= '0' && *q <= '9')
                && *q != '_' && *q != '.' && *q != '/' && *q != '-')
            {
                ngx_shinsei_tmpl_error(cmp, src, tag->start,
                                       "bad tag name \"%V\"", &tag->name);
                return NGX_ERROR;
            }
        }
    }

    text->len = tag->start - start;
    *pos = le;

    if (tag->sigil == 'v' || tag->sigil == '&' || tag->sigil == '@') {
        return NGX_OK;
    }

    /* a standalone tag removes its indentation and its line end */

    ls = tag->start;

    while (ls > start && (ls[-1] == ' ' || ls[-1] == '\t')) {
        ls--;
    }

    if (ls != src->file->text.data && ls[-1] != '\n') {
        return NGX_OK;
    }

    while (le < src->end && (*le == ' ' || *le == '\t')) {
        le++;
    }

    if (le < src->end && *le == '\r' && le + 1 < src->end && le[1] == '\n') {
        le += 2;

    } else if (le < src->end && *le == '\n') {
        le++;

    } else if (le != src->end) {
        return NGX_OK;
    }

    text->len = ls - start;
    *pos = le;

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_tmpl_skip(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, u_char **pos, ngx_shinsei_tmpl_tag_t *open,
    ngx_shinsei_tmpl_src_t *body)
{
    ngx_int_t               rc;
    ngx_str_t               text;
    ngx_uint_t              depth;
    ngx_shinsei_tmpl_tag_t  tag;

    body->file = src->file;
    body->pos = *pos;
    depth = 0;

    for ( ;; ) {
        rc = ngx_shinsei_tmpl_scan(cmp, src, pos, &text, &tag);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DONE) {
            ngx_shinsei_tmpl_error(cmp, src, open->start,
                                   "\"%V\" is not closed", &open->name);
            return NGX_ERROR;
        }

        switch (tag.sigil) {

        case '#': case '^': case '$': case '<':
            depth++;
            break;

        case '/':
            if (depth == 0) {
                if (tag.name.len != open->name.len
                    || ngx_strncmp(tag.name.data, open->name.data,
                                   tag.name.len) != 0)
                {
                    ngx_shinsei_tmpl_error(cmp, src, tag.start,
                                           "\"%V\" closes another block",
                                           &tag.name);
                    return NGX_ERROR;
                }

                body->end = text.data + text.len;
                return NGX_OK;
            }

            depth--;
            break;

        default:
            break;
        }
    }
}


static ngx_int_t
ngx_shinsei_tmpl_inherit(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *body, ngx_shinsei_tmpl_tag_t *tag,
    ngx_array_t *outer)
{
    u_char                    *pos;
    ngx_int_t                  rc;
    ngx_str_t                  text;
    ngx_uint_t                 i, j, found;
    ngx_array_t               *blocks;
    ngx_shinsei_tmpl_tag_t     t;
    ngx_shinsei_tmpl_src_t     parent, inner;
    ngx_shinsei_tmpl_file_t   *f;
    ngx_shinsei_tmpl_block_t  *b, *ob;

    f = ngx_shinsei_tmpl_file(cmp->set, &tag->name);
    if (f == NULL) {
        ngx_shinsei_tmpl_error(cmp, body, tag->start, "no layout \"%V\"",
                               &tag->name);
        return NGX_ERROR;
    }

    blocks = ngx_array_create(cmp->cf->pool, 4,
                              sizeof(ngx_shinsei_tmpl_block_t));
    if (blocks == NULL) {
        return NGX_ERROR;
    }

    /* blocks given by an outer page win over this page's own */

    if (outer) {
        ob = outer->elts;

        for (i = 0; i < outer->nelts; i++) {
            b = ngx_array_push(blocks);
            if (b == NULL) {
                return NGX_ERROR;
            }

            *b = ob[i];
        }
    }

    pos = body->pos;

    for ( ;; ) {
        rc = ngx_shinsei_tmpl_scan(cmp, body, &pos, &text, &t);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DONE) {
            break;
        }

        if (t.sigil == '!') {
            continue;
        }

        if (t.sigil != '$') {
            ngx_shinsei_tmpl_error(cmp, body, t.start,
                                   "only {{$block}} may stand inside "
                                   "{{<layout}}, not \"%V\"", &t.name);
            return NGX_ERROR;
        }

        if (ngx_shinsei_tmpl_skip(cmp, body, &pos, &t, &inner) != NGX_OK) {
            return NGX_ERROR;
        }

        b = blocks->elts;
        found = 0;

        for (j = 0; j < blocks->nelts; j++) {
            if (b[j].name.len == t.name.len
                && ngx_strncmp(b[j].name.data, t.name.data, t.name.len) == 0)
            {
                found = 1;
                break;
            }
        }

        if (found) {
            continue;
        }

        b = ngx_array_push(blocks);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->name = t.name;
        b->body = inner;
    }

    parent.file = f;
    parent.pos = f->text.data;
    parent.end = f->text.data + f->text.len;

    return ngx_shinsei_tmpl_compile(cmp, &parent, blocks);
}


static ngx_shinsei_tmpl_op_t *
ngx_shinsei_tmpl_add_op(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_op_type_e type, ngx_str_t *name)
{
    u_char                 *p, *last, *dot;
    ngx_uint_t              n;
    ngx_shinsei_tmpl_op_t  *op;

    op = ngx_array_push(&cmp->tmpl->ops);
    if (op == NULL) {
        return NULL;
    }

    ngx_memzero(op, sizeof(ngx_shinsei_tmpl_op_t));
    op->type = type;

    if (name == NULL || type == NGX_SHINSEI_TMPL_END) {
        return op;
    }

    op->text = *name;

    if (name->len == 1 && name->data[0] == '.') {
        return op;
    }

    /* "a.b.c" is looked up key by key */

    n = 1;
    last = name->data + name->len;

    for (p = name->data; p < last; p++) {
        if (*p == '.') {
            n++;
        }
    }

    op->path = ngx_palloc(cmp->cf->pool, n * sizeof(char *));
    if (op->path == NULL) {
        return NULL;
    }

    for (p = name->data; p <= last; p = dot + 1) {
        dot = ngx_strlchr(p, last, '.');
        if (dot == NULL) {
            dot = last;
        }

        op->path[op->npath] = ngx_pnalloc(cmp->cf->pool, dot - p + 1);
        if (op->path[op->npath] == NULL) {
            return NULL;
        }

        *ngx_cpymem(op->path[op->npath], p, dot - p) = '\0';
        op->npath++;
    }

    return op;
}


static ngx_shinsei_tmpl_file_t *
ngx_shinsei_tmpl_file(ngx_shinsei_tmpl_set_t *set, ngx_str_t *name)
{
    ngx_uint_t                i;
    ngx_shinsei_tmpl_file_t  *f;

    f = set->files.elts;

    for (i = 0; i < set->files.nelts; i++) {
        if (f[i].name.len == name->len
            && ngx_strncmp(f[i].name.data, name->data, name->len) == 0)
        {
            return &f[i];
        }
    }

    return NULL;
}


static void
ngx_shinsei_tmpl_error(ngx_shinsei_tmpl_compiler_t *cmp,
    ngx_shinsei_tmpl_src_t *src, u_char *at, const char *fmt, ngx_str_t *arg)
{
    u_char      *p, msg[256];
    ngx_uint_t   line;

    line = 1;

    for (p = src->file->text.data; p < at; p++) {
        if (*p == '\n') {
            line++;
        }
    }

    p = ngx_snprintf(msg, sizeof(msg) - 1, fmt, arg);
    *p = '\0';

    ngx_conf_log_error(NGX_LOG_EMERG, cmp->cf, 0,
                       ngx_shinsei_log_prefix "template \"%V%s\" line %ui: "
                       "%s", &src->file->name,
                       src->file->html ? ".html" : ".txt", line, msg);
}


static ngx_int_t
ngx_shinsei_tmpl_run(ngx_shinsei_tmpl_out_t *o, ngx_shinsei_tmpl_op_t *ops,
    ngx_uint_t from, ngx_uint_t to)
{
    cJSON                  *v, *item;
    ngx_uint_t              i;
    ngx_shinsei_tmpl_op_t  *op;

    for (i = from; i < to; /* void */ ) {

        op = &ops[i];

        switch (op->type) {

        case NGX_SHINSEI_TMPL_TEXT:
            if (ngx_shinsei_tmpl_write(o, op->text.data, op->text.len)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            i++;
            break;

        case NGX_SHINSEI_TMPL_VAR:
        case NGX_SHINSEI_TMPL_RAW:
            v = ngx_shinsei_tmpl_lookup(o, op);

            if (ngx_shinsei_tmpl_value(o, v, op->type == NGX_SHINSEI_TMPL_VAR
                                             && o->html)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            i++;
            break;

        case NGX_SHINSEI_TMPL_SECTION:
            v = ngx_shinsei_tmpl_lookup(o, op);

            if (ngx_shinsei_tmpl_truthy(v)) {

                if (o->depth == NGX_SHINSEI_TMPL_MAX_DEPTH) {
                    return NGX_ERROR;
                }

                if (cJSON_IsArray(v)) {
                    cJSON_ArrayForEach(item, v) {
                        o->stack[o->depth++] = item;

                        if (ngx_shinsei_tmpl_run(o, ops, i + 1, op->jump - 1)
                            != NGX_OK)
                        {
                            return NGX_ERROR;
                        }

                        o->depth--;
                    }

                } else {
                    o->stack[o->depth++] = v;

                    if (ngx_shinsei_tmpl_run(o, ops, i + 1, op->jump - 1)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    o->depth--;
                }
            }

            i = op->jump;
            break;

        case NGX_SHINSEI_TMPL_INVERTED:
            v = ngx_shinsei_tmpl_lookup(o, op);

            if (!ngx_shinsei_tmpl_truthy(v)) {
                if (ngx_shinsei_tmpl_run(o, ops, i + 1, op->jump - 1)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            i = op->jump;
            break;

        default:
            i++;
            break;
        }
    }

    return NGX_OK;
}


static cJSON *
ngx_shinsei_tmpl_lookup(ngx_shinsei_tmpl_out_t *o, ngx_shinsei_tmpl_op_t *op)
{
    cJSON       *v;
    ngx_uint_t   i, k;

    if (op->npath == 0) {
        return o->stack[o->depth - 1];
    }

    v = NULL;

    /* the first key is searched from the innermost context outwards */

    for (i = o->depth; i > 0; i--) {
        if (cJSON_IsObject(o->stack[i - 1])) {
            v = cJSON_GetObjectItemCaseSensitive(o->stack[i - 1],
                                                 op->path[0]);
            if (v) {
                break;
            }
        }
    }

    for (k = 1; v && k < op->npath; k++) {
        v = cJSON_IsObject(v)
            ? cJSON_GetObjectItemCaseSensitive(v, op->path[k]) : NULL;
    }

    return v;
}


static ngx_uint_t
ngx_shinsei_tmpl_truthy(cJSON *v)
{
    if (v == NULL || cJSON_IsNull(v) || cJSON_IsFalse(v)) {
        return 0;
    }

    if (cJSON_IsArray(v)) {
        return cJSON_GetArraySize(v) > 0;
    }

    if (cJSON_IsString(v)) {
        return v->valuestring[0] != '\0';
    }

    if (cJSON_IsNumber(v)) {
        return v->valuedouble != 0;
    }

    return 1;
}


static ngx_int_t
ngx_shinsei_tmpl_value(ngx_shinsei_tmpl_out_t *o, cJSON *v,
    ngx_uint_t escape)
{
    u_char   *p, num[NGX_INT64_LEN + 32];
    size_t    len;

    if (v == NULL) {
        return NGX_OK;
    }

    if (cJSON_IsString(v)) {
        p = (u_char *) v->valuestring;
        len = ngx_strlen(p);

        return escape ? ngx_shinsei_tmpl_write_escaped(o, p, len)
                      : ngx_shinsei_tmpl_write(o, p, len);
    }

    if (cJSON_IsNumber(v)) {
        if (v->valuedouble > -9.0e15 && v->valuedouble < 9.0e15
            && v->valuedouble == (double) (int64_t) v->valuedouble)
        {
            p = ngx_sprintf(num, "%L", (int64_t) v->valuedouble);

        } else {
            p = ngx_sprintf(num, "%.2f", v->valuedouble);
        }

        return ngx_shinsei_tmpl_write(o, num, p - num);
    }

    if (cJSON_IsTrue(v)) {
        return ngx_shinsei_tmpl_write(o, (u_char *) "true", 4);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_shinsei_tmpl_write(ngx_shinsei_tmpl_out_t *o, u_char *p, size_t len)
{
    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for ( ;; ) {
        b = o->buf;

        if (b) {
            n = ngx_min(len, (size_t) (b->end - b->last));
            b->last = ngx_cpymem(b->last, p, n);
            p += n;
            len -= n;
            o->size += n;

            if (len == 0) {
                return NGX_OK;
            }
        }

        b = ngx_create_temp_buf(o->pool, NGX_SHINSEI_TMPL_BUF_SIZE);
        if (b == NULL) {
            return NGX_ERROR;
        }

        cl = ngx_alloc_chain_link(o->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = b;
        cl->next = NULL;
        *o->last = cl;
        o->last = &cl->next;
        o->buf = b;

        if (len == 0) {
            return NGX_OK;
        }
    }
}


static ngx_int_t
ngx_shinsei_tmpl_write_escaped(ngx_shinsei_tmpl_out_t *o, u_char *p,
    size_t len)
{
    u_char     *last, *run;
    size_t      n;
    const char *entity;

    last = p + len;
    run = p;

    for ( /* void */ ; p < last; p++) {

        switch (*p) {
        case '&':  entity = "&amp;";  n = 5; break;
        case '<':  entity = "&lt;";   n = 4; break;
        case '>':  entity = "&gt;";   n = 4; break;
        case '"':  entity = "&quot;"; n = 6; break;
        case '\'': entity = "&#39;";  n = 5; break;
        default:   continue;
        }

        if (ngx_shinsei_tmpl_write(o, run, p - run) != NGX_OK
            || ngx_shinsei_tmpl_write(o, (u_char *) entity, n) != NGX_OK)
        {
            return NGX_ERROR;
        }

        run = p + 1;
    }

    return ngx_shinsei_tmpl_write(o, run, last - run);
}
