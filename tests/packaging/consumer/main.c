/* Prints what the loaded liblmtp says about itself; fails if it is not the
 * version of the header this was compiled with. */
#include <lmtp.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    char expected[64];

    snprintf(expected, sizeof expected, "%d.%d.%d", LMTP_VERSION_MAJOR, LMTP_VERSION_MINOR,
             LMTP_VERSION_PATCH);
    printf("version %s\n", lmtp_version());
    printf("strerror %s\n", lmtp_strerror(LMTP_ERR_TIMEOUT));
    if (strcmp(lmtp_version(), expected) != 0 || lmtp_version_num() != LMTP_VERSION_NUM) {
        fprintf(stderr, "header %s, library %s\n", expected, lmtp_version());
        return 1;
    }
    if (lmtp_strerror(LMTP_ERR_TIMEOUT)[0] == '\0' ||
        strcmp(lmtp_strerror(LMTP_ERR_TIMEOUT), lmtp_strerror(LMTP_OK)) == 0) {
        fprintf(stderr, "lmtp_strerror does not tell statuses apart\n");
        return 1;
    }
    return 0;
}
