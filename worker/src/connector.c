/* connector.c -- the vendor connectors by name (docs/CONNECTORS.md) */

#include <string.h>
#include <sys/time.h>

#include "vw_connector.h"
#include "vw_oauth.h"


/*
 * Weak while the connectors and the token manager are written side by
 * side: a worker built without one of them kills that connector's jobs
 * ("built without the job's connector") instead of failing to link.
 * They become plain references once all three are in.
 */
#pragma weak vw_connector_salesforce
#pragma weak vw_connector_salesforce_bulk
#pragma weak vw_connector_hubspot
#pragma weak vw_oauth_create
#pragma weak vw_oauth_free


const vw_connector_t *
vw_connector_find(const char *name, const char *operation)
{
    /* Bulk API 2.0 is a connector of its own: sf_bulk.c */
    if (strcmp(name, "salesforce") == 0 && strncmp(operation, "bulk_", 5) == 0)
    {
        return &vw_connector_salesforce_bulk != NULL
               ? &vw_connector_salesforce_bulk : NULL;
    }

    if (strcmp(name, "salesforce") == 0 && &vw_connector_salesforce != NULL) {
        return &vw_connector_salesforce;
    }

    if (strcmp(name, "hubspot") == 0 && &vw_connector_hubspot != NULL) {
        return &vw_connector_hubspot;
    }

    return NULL;
}


int
vw_connectors_init(vw_services_t *svc)
{
    if (&vw_oauth_create == NULL) {
        return VW_OK;
    }

    svc->oauth = vw_oauth_create(svc);

    return svc->oauth != NULL ? VW_OK : VW_ERROR;
}


void
vw_connectors_free(vw_services_t *svc)
{
    if (svc->oauth != NULL) {
        vw_oauth_free(svc->oauth);
        svc->oauth = NULL;
    }
}


uint64_t
vw_services_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (uint64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}
