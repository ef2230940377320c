/* connector.c -- the vendor connectors by name (docs/CONNECTORS.md) */

#include <string.h>
#include <sys/time.h>

#include "vw_connector.h"
#include "vw_oauth.h"


const vw_connector_t *
vw_connector_find(const char *name, const char *operation)
{
    /* Bulk API 2.0 is a connector of its own: sf_bulk.c */
    if (strcmp(name, "salesforce") == 0 && strncmp(operation, "bulk_", 5) == 0)
    {
        return &vw_connector_salesforce_bulk;
    }

    if (strcmp(name, "salesforce") == 0) {
        return &vw_connector_salesforce;
    }

    if (strcmp(name, "hubspot") == 0) {
        return &vw_connector_hubspot;
    }

    return NULL;
}


int
vw_connectors_init(vw_services_t *svc)
{
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
