/* vw_salesforce.h -- what the Salesforce connector tells the rest */

#ifndef VW_SALESFORCE_H
#define VW_SALESFORCE_H


#include <stdint.h>


/*
 * The attempts admit() has held back since the process started because a
 * connection's daily API allowance was nearly spent (docs/CONNECTORS.md,
 * "Vendor limits"), for the metrics.
 */
uint64_t vw_salesforce_deferrals(void);


#endif /* VW_SALESFORCE_H */
