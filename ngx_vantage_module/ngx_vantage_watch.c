/* ngx_vantage_watch.c -- key files: load at configuration, reload on change */

#include "ngx_vantage_module.h"


static ngx_int_t ngx_vantage_watch_load(ngx_vantage_watch_t *w,
    ngx_log_t *log, ngx_file_info_t *fi, void **data, size_t *nkeys,
    char *errstr);
static void ngx_vantage_watch_cleanup(void *data);
static void ngx_vantage_watch_check(ngx_event_t *ev);


/*
 * Returns the watched file "name" of this kind, loading it if no location
 * named it before, or NULL when it cannot be loaded (logged here, naming
 * the directive, so that a bad file fails "nginx -t") or memory runs out.
 * One file is shared by all the locations of a kind that name it: it is
 * parsed, held and re-checked once, not once per location.
 */
ngx_vantage_watch_t *
ngx_vantage_watch_add(ngx_conf_t *cf, ngx_command_t *cmd, ngx_str_t *name,
    ngx_vantage_watch_kind_t *kind)
{
    char                      errstr[VC_ERRSTR_LEN];
    size_t                    nkeys;
    ngx_str_t                 path;
    ngx_uint_t                i;
    ngx_file_info_t           fi;
    ngx_pool_cleanup_t       *cln;
    ngx_vantage_watch_t      *w, **wp;
    ngx_vantage_main_conf_t  *vmcf;

    path = *name;

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NULL;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);
    wp = vmcf->watches.elts;

    for (i = 0; i < vmcf->watches.nelts; i++) {
        if (wp[i]->kind == kind
            && wp[i]->path.len == path.len
            && ngx_strncmp(wp[i]->path.data, path.data, path.len) == 0)
        {
            return wp[i];
        }
    }

    w = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_watch_t));
    if (w == NULL) {
        return NULL;
    }

    /* ngx_conf_full_name() leaves the name NUL-terminated */
    w->path = path;
    w->kind = kind;

    if (ngx_vantage_watch_load(w, cf->log, &fi, &w->data, &nkeys, errstr)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V \"%V\": %s",
                           &cmd->name, name, errstr);
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        kind->free(w->data);
        return NULL;
    }

    cln->handler = ngx_vantage_watch_cleanup;
    cln->data = w;

    wp = ngx_array_push(&vmcf->watches);
    if (wp == NULL) {
        return NULL;
    }

    *wp = w;

    return w;
}


/*
 * Reads the file and has its kind parse it.  Called at configuration time
 * and from a timer in each worker process, never from a request handler;
 * the file is local and small.  On success the file's identity is
 * remembered, so that the timer sees when it changes.
 */
static ngx_int_t
ngx_vantage_watch_load(ngx_vantage_watch_t *w, ngx_log_t *log,
    ngx_file_info_t *fi, void **data, size_t *nkeys, char *errstr)
{
    u_char     *buf;
    size_t      size;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_err_t   err;

    buf = NULL;

    fd = ngx_open_file(w->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        ngx_snprintf((u_char *) errstr, VC_ERRSTR_LEN, "cannot open: %s%Z",
                     strerror(err));
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        ngx_snprintf((u_char *) errstr, VC_ERRSTR_LEN, "cannot stat: %s%Z",
                     strerror(err));
        goto failed;
    }

    size = ngx_file_size(fi);

    if (size > w->kind->max_size) {
        ngx_snprintf((u_char *) errstr, VC_ERRSTR_LEN,
                     "file is larger than %uzm%Z", w->kind->max_size >> 20);
        goto failed;
    }

    buf = ngx_alloc(size + 1, log);
    if (buf == NULL) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "out of memory",
                    VC_ERRSTR_LEN);
        goto failed;
    }

    n = ngx_read_fd(fd, buf, size);

    if (n < 0 || (size_t) n != size) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "short read",
                    VC_ERRSTR_LEN);
        goto failed;
    }

    if (w->kind->load(buf, size, log, data, nkeys, errstr) != NGX_OK) {
        goto failed;
    }

    /* a key file may hold secrets: none is left behind in freed memory */
    ngx_explicit_memzero(buf, size);
    ngx_free(buf);
    ngx_close_file(fd);

    w->uniq = ngx_file_uniq(fi);
    w->mtime = ngx_file_mtime(fi);
    w->mtime_nsec = fi->st_mtim.tv_nsec;
    w->size = ngx_file_size(fi);

    return NGX_OK;

failed:

    if (buf) {
        ngx_explicit_memzero(buf, size);
        ngx_free(buf);
    }

    ngx_close_file(fd);

    return NGX_ERROR;
}


static void
ngx_vantage_watch_cleanup(void *data)
{
    ngx_vantage_watch_t  *w = data;

    if (w->data) {
        w->kind->free(w->data);
        w->data = NULL;
    }
}


/* starts the re-check of every watched file in this worker process */
ngx_int_t
ngx_vantage_watch_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_vantage_watch_t      **wp;
    ngx_vantage_main_conf_t   *vmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);
    if (vmcf == NULL) {
        return NGX_OK;
    }

    wp = vmcf->watches.elts;

    for (i = 0; i < vmcf->watches.nelts; i++) {
        wp[i]->timer.handler = ngx_vantage_watch_check;
        wp[i]->timer.data = wp[i];
        wp[i]->timer.log = cycle->log;

        /* a worker process that is shutting down does not wait for it */
        wp[i]->timer.cancelable = 1;

        ngx_add_timer(&wp[i]->timer, vmcf->keys_check_interval);
    }

    return NGX_OK;
}


static void
ngx_vantage_watch_check(ngx_event_t *ev)
{
    ngx_vantage_watch_t *w = ev->data;

    char                      errstr[VC_ERRSTR_LEN];
    void                     *data;
    size_t                    nkeys;
    ngx_file_info_t           fi;
    ngx_vantage_main_conf_t  *vmcf;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_vantage_module);

    ngx_add_timer(ev, vmcf->keys_check_interval);

    if (ngx_file_info(w->path.data, &fi) == NGX_FILE_ERROR) {
        if (!w->failed) {
            ngx_log_error(NGX_LOG_ERR, ev->log, ngx_errno,
                          "%s: key file \"%V\" cannot be read, "
                          "the keys loaded before stay in force",
                          w->kind->log_name, &w->path);
            w->failed = 1;
        }

        return;
    }

    if (ngx_file_uniq(&fi) == w->uniq
        && ngx_file_mtime(&fi) == w->mtime
        && fi.st_mtim.tv_nsec == w->mtime_nsec
        && ngx_file_size(&fi) == w->size)
    {
        return;
    }

    if (ngx_vantage_watch_load(w, ev->log, &fi, &data, &nkeys, errstr)
        != NGX_OK)
    {
        /*
         * the file as it is now is remembered, so the check above logs a
         * bad file once for each change of it, not every interval
         */

        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "%s: key file \"%V\" not reloaded: %s; "
                      "the keys loaded before stay in force",
                      w->kind->log_name, &w->path, errstr);

        w->failed = 1;
        w->uniq = ngx_file_uniq(&fi);
        w->mtime = ngx_file_mtime(&fi);
        w->mtime_nsec = fi.st_mtim.tv_nsec;
        w->size = ngx_file_size(&fi);

        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                  "%s: key file \"%V\" reloaded, %uz keys",
                  w->kind->log_name, &w->path, nkeys);

    /*
     * no request holds the old contents: neither the JWT nor the API key
     * check suspends a request, and what the API key variables show was
     * copied into the request's pool
     */

    w->kind->free(w->data);

    w->data = data;
    w->failed = 0;
}
