/* vw_hubspot.h -- what the HubSpot connector counts, for the metrics */

#ifndef VW_HUBSPOT_H
#define VW_HUBSPOT_H


#include <stdint.h>


typedef struct {
    uint64_t                    rate_limited;  /* 429s HubSpot answered */
    uint64_t                    deferred;      /* attempts admit() held
                                                  back for a pause */
    uint64_t                    held;          /* calls an attempt held
                                                  for a pause begun after
                                                  admit() */
    uint64_t                    pauses;        /* pauses begun here */
    uint64_t                    replays;       /* calls sent again with a
                                                  new token after a 401 */
} vw_hubspot_stats_t;


/* copies the process's counters since it started into *out */
void vw_hubspot_stats(vw_hubspot_stats_t *out);


#endif /* VW_HUBSPOT_H */
