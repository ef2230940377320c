/* fuzz_keys.c -- libFuzzer target: load and free any key file */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vc_keys.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vc_keyset_t  ks;
    char         err[VC_ERRSTR_LEN];
    size_t       i;

    memset(&ks, 0, sizeof(ks));

    if (vc_keyset_load(&ks, data, size, err, sizeof(err)) == VC_OK) {
        if (ks.nkeys == 0 || ks.keys == NULL) {
            abort();
        }

        for (i = 0; i < ks.nkeys; i++) {
            if (ks.keys[i].algs == 0
                || (ks.keys[i].kid
                    && strlen(ks.keys[i].kid) > ks.keys[i].kid_len))
            {
                abort();
            }
        }

    } else if (ks.nkeys != 0 || ks.keys != NULL || err[0] == '\0'
               || strlen(err) >= sizeof(err))
    {
        abort();
    }

    vc_keyset_free(&ks);

    return 0;
}
