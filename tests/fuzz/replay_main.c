/* replay_main.c -- feeds files to a fuzz target without libFuzzer */

#include <dirent.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int replay_file(const char *path);


static size_t  ninputs;


int
main(int argc, char **argv)
{
    DIR            *dir;
    struct dirent  *de;
    struct stat     st;
    char            path[4096];
    int             i;

    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }

        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[i]) != 0) {
                return 1;
            }

            continue;
        }

        dir = opendir(argv[i]);
        if (dir == NULL) {
            perror(argv[i]);
            return 1;
        }

        while ((de = readdir(dir)) != NULL) {
            /* ".", "..", and ".gitkeep" */
            if (de->d_name[0] == '.') {
                continue;
            }

            snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);

            if (replay_file(path) != 0) {
                closedir(dir);
                return 1;
            }
        }

        closedir(dir);
    }

    printf("fuzz-replay: %s: %zu inputs ok\n", basename(argv[0]), ninputs);

    return 0;
}


static int
replay_file(const char *path)
{
    FILE           *f;
    unsigned char  *buf;
    long            len;

    f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        perror(path);
        fclose(f);
        return -1;
    }

    /* exactly len bytes, so that ASan sees an over-read */
    buf = malloc(len ? (size_t) len : 1);
    if (buf == NULL || fread(buf, 1, (size_t) len, f) != (size_t) len) {
        fprintf(stderr, "%s: read failed\n", path);
        free(buf);
        fclose(f);
        return -1;
    }

    fclose(f);

    LLVMFuzzerTestOneInput(buf, (size_t) len);
    free(buf);
    ninputs++;

    return 0;
}
