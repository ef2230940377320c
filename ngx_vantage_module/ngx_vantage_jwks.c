/* ngx_vantage_jwks.c -- key files: load at configuration, reload on change */

#include "ngx_vantage_module.h"


#define NGX_VANTAGE_JWKS_MAX_SIZE  (1024 * 1024)


static ngx_int_t ngx_vantage_jwks_load(ngx_vantage_jwks_t *jwks,
    ngx_log_t *log, ngx_file_info_t *fi, vc_keyset_t **keys, char *errstr);
static void ngx_vantage_jwks_cleanup(void *data);
static void ngx_vantage_jwks_check(ngx_event_t *ev);


/*
 * vantage_jwt_keys file: the file is read and checked here, so that a bad
 * one fails "nginx -t"; each worker process then watches it for changes.
 */
char *
ngx_vantage_jwks_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    char                      errstr[VC_ERRSTR_LEN];
    ngx_str_t                *value, path;
    ngx_uint_t                i;
    ngx_file_info_t           fi;
    ngx_pool_cleanup_t       *cln;
    ngx_vantage_jwks_t       *jwks, **jwksp;
    ngx_vantage_main_conf_t  *vmcf;

    if (vlcf->keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);
    jwksp = vmcf->keysets.elts;

    for (i = 0; i < vmcf->keysets.nelts; i++) {
        if (jwksp[i]->path.len == path.len
            && ngx_strncmp(jwksp[i]->path.data, path.data, path.len) == 0)
        {
            vlcf->keys = jwksp[i];
            return NGX_CONF_OK;
        }
    }

    jwks = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_jwks_t));
    if (jwks == NULL) {
        return NGX_CONF_ERROR;
    }

    /* ngx_conf_full_name() leaves the name NUL-terminated */
    jwks->path = path;

    if (ngx_vantage_jwks_load(jwks, cf->log, &fi, &jwks->keys, errstr)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V \"%V\": %s",
                           &cmd->name, &value[1], errstr);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        vc_keyset_free(jwks->keys);
        ngx_free(jwks->keys);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_vantage_jwks_cleanup;
    cln->data = jwks;

    jwksp = ngx_array_push(&vmcf->keysets);
    if (jwksp == NULL) {
        return NGX_CONF_ERROR;
    }

    *jwksp = jwks;
    vlcf->keys = jwks;

    return NGX_CONF_OK;
}


/*
 * Reads and parses the key file into a new keyset.  Called at configuration
 * time and from a timer in each worker process, never from a request
 * handler; the file is local and small.
 */
static ngx_int_t
ngx_vantage_jwks_load(ngx_vantage_jwks_t *jwks, ngx_log_t *log,
    ngx_file_info_t *fi, vc_keyset_t **keys, char *errstr)
{
    u_char       *buf;
    size_t        size;
    ssize_t       n;
    ngx_fd_t      fd;
    ngx_err_t     err;
    vc_keyset_t  *ks;

    buf = NULL;
    ks = NULL;

    fd = ngx_open_file(jwks->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
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

    if (size > NGX_VANTAGE_JWKS_MAX_SIZE) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "file is larger than 1m",
                    VC_ERRSTR_LEN);
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

    ks = ngx_calloc(sizeof(vc_keyset_t), log);
    if (ks == NULL) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "out of memory",
                    VC_ERRSTR_LEN);
        goto failed;
    }

    if (vc_keyset_load(ks, buf, size, errstr, VC_ERRSTR_LEN) != VC_OK) {
        goto failed;
    }

    /* the secret bytes are not left behind in freed memory */
    ngx_explicit_memzero(buf, size);
    ngx_free(buf);
    ngx_close_file(fd);

    jwks->uniq = ngx_file_uniq(fi);
    jwks->mtime = ngx_file_mtime(fi);
    jwks->mtime_nsec = fi->st_mtim.tv_nsec;
    jwks->size = ngx_file_size(fi);

    *keys = ks;

    return NGX_OK;

failed:

    if (buf) {
        ngx_explicit_memzero(buf, size);
        ngx_free(buf);
    }

    if (ks) {
        vc_keyset_free(ks);
        ngx_free(ks);
    }

    ngx_close_file(fd);

    return NGX_ERROR;
}


static void
ngx_vantage_jwks_cleanup(void *data)
{
    ngx_vantage_jwks_t  *jwks = data;

    if (jwks->keys) {
        vc_keyset_free(jwks->keys);
        ngx_free(jwks->keys);
        jwks->keys = NULL;
    }
}


ngx_int_t
ngx_vantage_jwks_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_vantage_jwks_t       **jwksp;
    ngx_vantage_main_conf_t   *vmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);
    if (vmcf == NULL) {
        return NGX_OK;
    }

    jwksp = vmcf->keysets.elts;

    for (i = 0; i < vmcf->keysets.nelts; i++) {
        jwksp[i]->timer.handler = ngx_vantage_jwks_check;
        jwksp[i]->timer.data = jwksp[i];
        jwksp[i]->timer.log = cycle->log;

        /* a worker process that is shutting down does not wait for it */
        jwksp[i]->timer.cancelable = 1;

        ngx_add_timer(&jwksp[i]->timer, vmcf->keys_check_interval);
    }

    return NGX_OK;
}


static void
ngx_vantage_jwks_check(ngx_event_t *ev)
{
    ngx_vantage_jwks_t *jwks = ev->data;

    char                      errstr[VC_ERRSTR_LEN];
    vc_keyset_t              *keys;
    ngx_file_info_t           fi;
    ngx_vantage_main_conf_t  *vmcf;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_vantage_module);

    ngx_add_timer(ev, vmcf->keys_check_interval);

    if (ngx_file_info(jwks->path.data, &fi) == NGX_FILE_ERROR) {
        if (!jwks->failed) {
            ngx_log_error(NGX_LOG_ERR, ev->log, ngx_errno,
                          "vantage jwt: key file \"%V\" cannot be read, "
                          "the keys loaded before stay in force",
                          &jwks->path);
            jwks->failed = 1;
        }

        return;
    }

    if (ngx_file_uniq(&fi) == jwks->uniq
        && ngx_file_mtime(&fi) == jwks->mtime
        && fi.st_mtim.tv_nsec == jwks->mtime_nsec
        && ngx_file_size(&fi) == jwks->size)
    {
        return;
    }

    if (ngx_vantage_jwks_load(jwks, ev->log, &fi, &keys, errstr) != NGX_OK) {

        /*
         * the file as it is now is remembered, so the check above logs a
         * bad file once for each change of it, not every interval
         */

        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "vantage jwt: key file \"%V\" not reloaded: %s; "
                      "the keys loaded before stay in force",
                      &jwks->path, errstr);

        jwks->failed = 1;
        jwks->uniq = ngx_file_uniq(&fi);
        jwks->mtime = ngx_file_mtime(&fi);
        jwks->mtime_nsec = fi.st_mtim.tv_nsec;
        jwks->size = ngx_file_size(&fi);

        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                  "vantage jwt: key file \"%V\" reloaded, %uz keys",
                  &jwks->path, keys->nkeys);

    /* no request holds the old set: verification never suspends */

    vc_keyset_free(jwks->keys);
    ngx_free(jwks->keys);

    jwks->keys = keys;
    jwks->failed = 0;
}
