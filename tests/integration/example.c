/* Deliver one message to several recipients and print each one's verdict.
 *   example HOST PORT [RECIPIENT...]      (HOST may be a unix socket path)
 * This is the example shown in README.md. */
#include <lmtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    static const char *const defaults[] = {"alice@example.org", "bob@example.org", "full@example.org",
                                           "nosuch@example.org"};
    static const char *const verdict[] = {"pending", "ok", "tempfail", "permfail", "unknown"};
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    unsigned port = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 24;
    const char *const *rcpts = argc > 3 ? (const char *const *)(argv + 3) : defaults;
    size_t nrcpts = argc > 3 ? (size_t)(argc - 3) : sizeof defaults / sizeof *defaults;
    const char *msg = "From: demo@example.org\n"
                      "Subject: hello from liblmtp\n"
                      "\n"
                      "One message, one verdict per recipient.\n";

    lmtp_options opts = LMTP_OPTIONS_INIT;
    opts.timeout_ms = 10000;
    lmtp_t *h = NULL;
    int st = lmtp_new(&h, host, port, &opts);
    if (st != LMTP_OK) {
        fprintf(stderr, "connect: %s\n", h ? lmtp_errmsg(h) : lmtp_strerror(st));
        lmtp_free(h);
        return 1;
    }
    st = lmtp_deliver(h, "demo@example.org", rcpts, nrcpts, msg, strlen(msg), NULL, NULL);
    if (st != LMTP_OK) fprintf(stderr, "deliver: %s\n", lmtp_errmsg(h));
    for (size_t i = 0; i < lmtp_result_count(h); i++)
        printf("%-22s %-8s %d %-5s %s\n", lmtp_result_address(h, i), verdict[lmtp_result_status(h, i)],
               lmtp_result_code(h, i), lmtp_result_enhanced(h, i), lmtp_result_text(h, i));
    lmtp_quit(h);
    lmtp_free(h);
    return st == LMTP_OK ? 0 : 1;
}
