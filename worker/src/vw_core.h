/* vw_core.h -- return codes, version and limits shared by the worker */

#ifndef VW_CORE_H
#define VW_CORE_H


#define VW_NAME       "vantage-worker"
#define VW_VERSION    "0.1.0"


/* the words nginx uses, so module and worker read alike (see vc_common.h) */
#define VW_OK         0
#define VW_ERROR     -1
#define VW_AGAIN     -2
#define VW_BUSY      -3
#define VW_DONE      -4
#define VW_DECLINED  -5


#define VW_ERRSTR_LEN  128


#endif /* VW_CORE_H */
