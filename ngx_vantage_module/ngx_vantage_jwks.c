/* ngx_vantage_jwks.c -- JWT key files: parse into a keyset, free it */

#include "ngx_vantage_module.h"




/* read and reloaded by ngx_vantage_watch.c, parsed here */
static ngx_vantage_watch_kind_t  ngx_vantage_jwks_kind = {
    "vantage jwt",
    1024 * 1024,
    ngx_vantage_jwks_load,
    ngx_vantage_jwks_free
};


/*
 * vantage_jwt_keys file: the file is read and checked here, so that a bad
 * one fails "nginx -t"; each worker process then watches it for changes.
 */
char *
ngx_vantage_jwks_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    ngx_str_t  *value;

    if (vlcf->keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    vlcf->keys = ngx_vantage_watch_add(cf, cmd, &value[1],
                                       &ngx_vantage_jwks_kind);
    if (vlcf->keys == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* parses the bytes of a key file, or of a provider's set, into a new keyset */
ngx_int_t
ngx_vantage_jwks_load(u_char *buf, size_t size, ngx_log_t *log, void **data,
    size_t *nkeys, char *errstr)
{
    vc_keyset_t  *ks;

    ks = ngx_calloc(sizeof(vc_keyset_t), log);
    if (ks == NULL) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "out of memory",
                    VC_ERRSTR_LEN);
        return NGX_ERROR;
    }

    if (vc_keyset_load(ks, buf, size, errstr, VC_ERRSTR_LEN) != VC_OK) {
        vc_keyset_free(ks);
        ngx_free(ks);
        return NGX_ERROR;
    }

    *data = ks;
    *nkeys = ks->nkeys;

    return NGX_OK;
}


void
ngx_vantage_jwks_free(void *data)
{
    vc_keyset_t  *ks = data;

    if (ks) {
        vc_keyset_free(ks);
        ngx_free(ks);
    }
}
