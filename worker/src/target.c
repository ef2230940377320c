/* target.c -- per-target concurrency limits and circuit breakers */

/*
 * Plain logic on a clock the caller passes in, so that a unit test can
 * drive it; the engine calls it from its loop and logs the transitions.
 * The error rate is counted in VW_TARGET_BUCKETS slots of the window, so
 * old calls age out a slot at a time without keeping every call.
 */

#include <stdlib.h>
#include <string.h>

#include "vw_target.h"


vw_target_t *
vw_target_get(vw_target_t **list, const char *name)
{
    vw_target_t  *t;

    for (t = *list; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0) {
            return t;
        }
    }

    t = calloc(1, sizeof(vw_target_t));
    if (t == NULL) {
        return NULL;
    }

    t->name = strdup(name);
    if (t->name == NULL) {
        free(t);
        return NULL;
    }

    t->next = *list;
    *list = t;

    return t;
}


void
vw_target_free_all(vw_target_t **list)
{
    vw_target_t  *t, *next;

    for (t = *list; t != NULL; t = next) {
        next = t->next;
        free(t->name);
        free(t);
    }

    *list = NULL;
}


static uint64_t
vw_target_slot_ms(const vw_target_limits_t *l)
{
    uint64_t  ms;

    ms = l->breaker_window_ms / VW_TARGET_BUCKETS;

    return ms ? ms : 1;
}


static void
vw_target_reset(vw_target_t *t)
{
    t->consecutive = 0;
    memset(t->bucket, 0, sizeof(t->bucket));
    memset(t->calls, 0, sizeof(t->calls));
    memset(t->failures, 0, sizeof(t->failures));
}


static void
vw_target_open(vw_target_t *t, const vw_target_limits_t *l, uint64_t now)
{
    t->state = VW_BREAKER_OPEN;
    t->open_until = now + l->breaker_cooldown_ms;
    t->probing = 0;
}


int
vw_target_acquire(vw_target_t *t, const vw_target_limits_t *l, uint64_t now,
    uint64_t *retry_at, unsigned *probe)
{
    if (probe != NULL) {
        *probe = 0;
    }

    if (t->state == VW_BREAKER_OPEN) {
        if (now < t->open_until) {
            *retry_at = t->open_until;
            return VW_DECLINED;
        }

        t->state = VW_BREAKER_HALF_OPEN;
        t->probing = 0;
    }

    if (t->state == VW_BREAKER_HALF_OPEN) {
        if (t->probing) {
            /* one probe at a time; the others look again a little later */
            *retry_at = now + (l->breaker_cooldown_ms < 1000
                               ? l->breaker_cooldown_ms : 1000);
            return VW_DECLINED;
        }

        if (t->running >= (l->max_concurrency ? l->max_concurrency : 1)) {
            return VW_BUSY;
        }

        t->probing = 1;
        t->running++;

        if (probe != NULL) {
            *probe = 1;
        }

        return VW_OK;
    }

    if (l->max_concurrency && t->running >= l->max_concurrency) {
        return VW_BUSY;
    }

    t->running++;

    return VW_OK;
}


int
vw_target_release(vw_target_t *t, const vw_target_limits_t *l, uint64_t now,
    vw_target_outcome_e outcome, unsigned probe)
{
    unsigned  i, slot_i, calls, failures;
    uint64_t  slot, slot_ms;

    if (t->running) {
        t->running--;
    }

    if (t->state == VW_BREAKER_HALF_OPEN && !probe) {
        /*
         * an attempt that began before the breaker opened: its verdict
         * is old news, and only the probe may close or reopen it
         */
        return 0;
    }

    if (outcome == VW_TARGET_CANCELLED) {
        if (t->state == VW_BREAKER_HALF_OPEN) {
            t->probing = 0;
        }

        return 0;
    }

    if (t->state == VW_BREAKER_HALF_OPEN) {
        if (outcome == VW_TARGET_SUCCESS) {
            t->state = VW_BREAKER_CLOSED;
            t->probing = 0;
            vw_target_reset(t);
            return VW_TARGET_CLOSED;
        }

        vw_target_open(t, l, now);
        return VW_TARGET_OPENED;
    }

    if (t->state == VW_BREAKER_OPEN) {
        /* an attempt that began before it opened: no verdict now */
        return 0;
    }

    slot_ms = vw_target_slot_ms(l);
    slot = now / slot_ms;
    slot_i = (unsigned) (slot % VW_TARGET_BUCKETS);

    if (t->bucket[slot_i] != slot) {
        t->bucket[slot_i] = slot;
        t->calls[slot_i] = 0;
        t->failures[slot_i] = 0;
    }

    t->calls[slot_i]++;

    if (outcome == VW_TARGET_SUCCESS) {
        t->consecutive = 0;
        return 0;
    }

    t->failures[slot_i]++;
    t->consecutive++;

    if (l->breaker_failures && t->consecutive >= l->breaker_failures) {
        vw_target_open(t, l, now);
        return VW_TARGET_OPENED;
    }

    calls = 0;
    failures = 0;

    for (i = 0; i < VW_TARGET_BUCKETS; i++) {
        if (t->bucket[i] + VW_TARGET_BUCKETS > slot) {
            calls += t->calls[i];
            failures += t->failures[i];
        }
    }

    if (l->breaker_error_rate && calls >= l->breaker_min_calls && calls
        && (uint64_t) failures * 100 >= (uint64_t) l->breaker_error_rate
                                        * calls)
    {
        vw_target_open(t, l, now);
        return VW_TARGET_OPENED;
    }

    return 0;
}
