/* ngx_vantage_redis.h -- one pipelined hiredis context per worker process */

#ifndef _NGX_VANTAGE_REDIS_H_INCLUDED_
#define _NGX_VANTAGE_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


typedef struct {
    ngx_str_t                   name;          /* as configured, for logs */
    ngx_str_t                   host;          /* numeric, NUL-terminated */
    int                         port;
    ngx_str_t                   unix_path;     /* NUL-terminated, or empty */
    ngx_str_t                   user;
    ngx_str_t                   password;      /* from password_file */
    ngx_int_t                   db;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  timeout;
    ngx_uint_t                  breaker_failures;
    ngx_msec_t                  breaker_cooldown;
} ngx_vantage_redis_conf_t;


typedef struct {
    int                         argc;
    const char                **argv;
    const size_t               *argvlen;
} ngx_vantage_redis_cmd_t;


/*
 * Called once per call: with the reply to the call's chosen command, or with
 * NULL when there is none (timeout, lost connection, Redis refusing to
 * work; the cause is logged already).  The reply is freed after the call.
 */
typedef void (*ngx_vantage_redis_handler_pt)(void *data, redisReply *reply);

typedef struct ngx_vantage_redis_call_s  ngx_vantage_redis_call_t;


char *ngx_vantage_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* a secret's file read at configuration time (vantage_redis password_file=,
   vantage_hubspot_webhook secret_file=); name NUL-terminated */
char *ngx_vantage_read_secret_file(ngx_conf_t *cf, const char *directive,
    const char *what, ngx_str_t *name, ngx_str_t *secret);
/* secret_file=<path>: an absolute path, then the file read as above */
char *ngx_vantage_read_secret_path(ngx_conf_t *cf, const char *directive,
    ngx_str_t *path, ngx_str_t *secret);
ngx_int_t ngx_vantage_redis_init_process(ngx_cycle_t *cycle);
void ngx_vantage_redis_exit_process(ngx_cycle_t *cycle);

/*
 * Queues the commands on this process's connection (connecting first when
 * there is none) and returns the pending call, whose handler gets the reply
 * to cmds[reply] (the other replies are dropped), or NULL when Redis cannot be
 * asked now: not configured, its circuit breaker open, or a reconnection
 * backing off.  A NULL return never blocks and never waits.
 */
ngx_vantage_redis_call_t *ngx_vantage_redis_send(ngx_vantage_redis_cmd_t *cmds,
    ngx_uint_t n, ngx_uint_t reply, ngx_vantage_redis_handler_pt handler,
    void *data);

/* the same for commands whose replies nobody waits for */
ngx_int_t ngx_vantage_redis_post(ngx_vantage_redis_cmd_t *cmds, ngx_uint_t n);

/* the caller has gone away: the handler will not be called */
void ngx_vantage_redis_cancel(ngx_vantage_redis_call_t *call);

/* NGX_OK when calls would be sent now, NGX_DECLINED when they fail fast */
ngx_int_t ngx_vantage_redis_available(void);


#endif /* _NGX_VANTAGE_REDIS_H_INCLUDED_ */
