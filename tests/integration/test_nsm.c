/*
 * test_nsm.c - the C API against a real Net::Server::Mail::LMTP (tests/support/nsm-lmtp.pl).
 *
 * That server answers every recipient after the message in ONE multi-line reply, a line each
 * ("250-Ok", "550-<address> Failed", "250 Ok"). Each line must be read as its recipient's verdict,
 * at once (no waiting for replies that never come), by lmtp_deliver, the step API
 * (lmtp_data_end then lmtp_response) and lmtp_deliver_batch, for two and three recipients, all
 * accepted and mixed; with LMTP_OPT_STRICT_REPLIES the reply is read as RFC 2033 says.
 *
 *   test_nsm PATH/TO/nsm-lmtp.pl
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lmtp.h"

static const char *g_script;

typedef struct server {
    pid_t pid;
    int stdin_fd; /* closing it stops the server (--exit-on-eof) */
    unsigned port;
    char dir[64]; /* --messages-dir */
} server;

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int start_server(void **state) {
    server *s = calloc(1, sizeof *s);
    int in[2], out[2];
    char line[64] = {0};
    size_t got = 0;
    assert_non_null(s);
    strcpy(s->dir, "/tmp/lmtp-nsm.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execlp("perl", "perl", g_script, "--messages-dir", s->dir, "--exit-on-eof", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->stdin_fd = in[1];
    while (got < sizeof line - 1) { /* "PORT n\n" */
        ssize_t n = read(out[0], line + got, 1);
        if (n <= 0 || line[got] == '\n') break;
        got++;
    }
    close(out[0]);
    if (sscanf(line, "PORT %u", &s->port) != 1) fail_msg("nsm-lmtp.pl did not start: '%s'", line);
    *state = s;
    return 0;
}

static int stop_server(void **state) {
    server *s = *state;
    DIR *d;
    struct dirent *e;
    int status = 0;
    close(s->stdin_fd);
    waitpid(s->pid, &status, 0);
    if ((d = opendir(s->dir)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            char path[512];
            if (e->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", s->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(s->dir);
    free(s);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Messages the server stored for `address` so far. */
static int stored(server *s, const char *address) {
    DIR *d = opendir(s->dir);
    struct dirent *e;
    int n = 0;
    size_t len = strlen(address);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, address, len) == 0 && e->d_name[len] == '.' && !strstr(e->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

static lmtp_t *connect_to(server *s, unsigned flags, unsigned timeout_ms) {
    lmtp_options o = LMTP_OPTIONS_INIT;
    lmtp_t *h = NULL;
    o.timeout_ms = timeout_ms;
    o.hello = "client.test";
    o.flags = flags;
    if (lmtp_new(&h, "127.0.0.1", s->port, &o) != LMTP_OK) fail_msg("connect: %s", h ? lmtp_errmsg(h) : "no memory");
    return h;
}

static const char kMsg[] = "Subject: nsm\n\nOne reply, a line per recipient.\n";

struct expect {
    const char *address;
    int status;
    int code;
    const char *text;
};

static void check_results(lmtp_t *h, const struct expect *want, size_t n) {
    size_t i;
    assert_int_equal(lmtp_result_count(h), n);
    for (i = 0; i < n; i++) {
        assert_string_equal(lmtp_result_address(h, i), want[i].address);
        assert_int_equal(lmtp_result_status(h, i), want[i].status);
        assert_int_equal(lmtp_result_code(h, i), want[i].code);
        assert_string_equal(lmtp_result_text(h, i), want[i].text);
        assert_int_equal(lmtp_result_stage(h, i), LMTP_STAGE_DATA);
    }
}

static const char *const kTwo[] = {"a@x", "b@x"};
static const struct expect kTwoOk[] = {{"a@x", LMTP_RESULT_OK, 250, "Ok"}, {"b@x", LMTP_RESULT_OK, 250, "Ok"}};
static const char *const kThree[] = {"a@x", "b@x", "c@x"};
static const struct expect kThreeOk[] = {
    {"a@x", LMTP_RESULT_OK, 250, "Ok"}, {"b@x", LMTP_RESULT_OK, 250, "Ok"}, {"c@x", LMTP_RESULT_OK, 250, "Ok"}};
static const char *const kMixed2[] = {"fail@x", "b@x"};
static const struct expect kMixed2Want[] = {{"fail@x", LMTP_RESULT_PERMFAIL, 550, "fail@x Failed"},
                                            {"b@x", LMTP_RESULT_OK, 250, "Ok"}};
static const char *const kMixed3[] = {"a@x", "fail@x", "temp@x"};
static const struct expect kMixed3Want[] = {{"a@x", LMTP_RESULT_OK, 250, "Ok"},
                                            {"fail@x", LMTP_RESULT_PERMFAIL, 550, "fail@x Failed"},
                                            {"temp@x", LMTP_RESULT_TEMPFAIL, 452, "temp@x try again later"}};

static void deliver_each(void **state) {
    server *s = *state;
    struct {
        const char *const *rcpts;
        size_t n;
        const struct expect *want;
    } cases[] = {{kTwo, 2, kTwoOk}, {kThree, 3, kThreeOk}, {kMixed2, 2, kMixed2Want}, {kMixed3, 3, kMixed3Want}};
    size_t c;
    lmtp_t *h = connect_to(s, 0, 10000);
    for (c = 0; c < sizeof cases / sizeof *cases; c++) {
        long t0 = now_ms();
        int before_a = stored(s, "a@x");
        assert_int_equal(lmtp_deliver(h, "s@x", cases[c].rcpts, cases[c].n, kMsg, strlen(kMsg), NULL, NULL), LMTP_OK);
        print_message("%zu recipients: %ld ms\n", cases[c].n, now_ms() - t0);
        assert_true(now_ms() - t0 < 3000); /* not waiting for replies that never come */
        check_results(h, cases[c].want, cases[c].n);
        /* what the server says it stored agrees with the verdicts */
        if (cases[c].rcpts[0][0] == 'a') assert_int_equal(stored(s, "a@x"), before_a + 1);
    }
    assert_int_equal(stored(s, "fail@x"), 0);
    assert_int_equal(stored(s, "temp@x"), 0);
    assert_int_equal(lmtp_quit(h), LMTP_OK); /* the session is in step: QUIT gets its own 221 */
    lmtp_free(h);
}

static void step_api(void **state) {
    server *s = *state;
    lmtp_t *h = connect_to(s, 0, 10000);
    size_t i;
    assert_int_equal(lmtp_mail(h, "s@x", NULL), LMTP_OK);
    for (i = 0; i < 3; i++) assert_int_equal(lmtp_to(h, kMixed3[i], NULL), LMTP_OK);
    assert_int_equal(lmtp_data_start(h), LMTP_OK);
    assert_int_equal(lmtp_data_write(h, kMsg, strlen(kMsg)), LMTP_OK);
    assert_int_equal(lmtp_data_end(h), LMTP_OK);
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_message(h), "Ok");
    assert_int_equal(lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 550);
    assert_string_equal(lmtp_message(h), "fail@x Failed");
    assert_int_equal(lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 452);
    assert_int_equal(lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    check_results(h, kMixed3Want, 3);
    assert_int_equal(lmtp_noop(h), LMTP_OK); /* in step */
    assert_int_equal(lmtp_quit(h), LMTP_OK);
    lmtp_free(h);
}

/* What the batch callback saw (asserting inside a callback of the library would jump over its frames). */
typedef struct seen {
    lmtp_t *h;
    int calls;
    int status[3];
    size_t count[3];
    int verdict[3][3];
    int code[3][3];
    char text[3][3][32];
} seen;

static int batch_done(void *user, size_t index, int status) {
    seen *s = user;
    size_t i;
    if (index >= 3) return 1;
    s->calls++;
    s->status[index] = status;
    s->count[index] = lmtp_result_count(s->h);
    for (i = 0; i < s->count[index] && i < 3; i++) {
        s->verdict[index][i] = lmtp_result_status(s->h, i);
        s->code[index][i] = lmtp_result_code(s->h, i);
        snprintf(s->text[index][i], sizeof s->text[index][i], "%s", lmtp_result_text(s->h, i));
    }
    return 0;
}

static void batch(void **state) {
    server *srv = *state;
    lmtp_t *h = connect_to(srv, 0, 10000);
    struct lmtp_message m[3];
    const char *const *lists[] = {kMixed3, kTwo, kMixed2};
    const struct expect *wants[] = {kMixed3Want, kTwoOk, kMixed2Want};
    size_t sizes[] = {3, 2, 2}, j, i;
    seen s;
    memset(&s, 0, sizeof s);
    s.h = h;
    for (j = 0; j < 3; j++) {
        lmtp_message_init(&m[j]);
        m[j].from = "s@x";
        m[j].rcpts = lists[j];
        m[j].nrcpts = sizes[j];
        m[j].data = kMsg;
        m[j].len = strlen(kMsg);
    }
    assert_int_equal(lmtp_deliver_batch(h, m, 3, batch_done, &s), LMTP_OK);
    assert_int_equal(s.calls, 3);
    for (j = 0; j < 3; j++) {
        assert_int_equal(s.status[j], LMTP_OK);
        assert_int_equal(s.count[j], sizes[j]);
        for (i = 0; i < sizes[j]; i++) {
            assert_int_equal(s.verdict[j][i], wants[j][i].status);
            assert_int_equal(s.code[j][i], wants[j][i].code);
            assert_string_equal(s.text[j][i], wants[j][i].text);
        }
    }
    assert_int_equal(lmtp_quit(h), LMTP_OK);
    lmtp_free(h);
}

static void strict_replies(void **state) {
    server *s = *state;
    lmtp_t *h = connect_to(s, LMTP_OPT_STRICT_REPLIES, 10000);
    long t0;
    /* Mixed codes on the lines of one reply: no valid reply when read strictly. */
    assert_int_equal(lmtp_deliver(h, "s@x", kMixed2, 2, kMsg, strlen(kMsg), NULL, NULL), LMTP_ERR_PROTOCOL);
    assert_non_null(strstr(lmtp_errmsg(h), "changed within a multi-line reply"));
    lmtp_free(h);
    /* The same code on each line: the first recipient's reply, and the second's never comes. */
    h = connect_to(s, LMTP_OPT_STRICT_REPLIES, 700);
    t0 = now_ms();
    assert_int_equal(lmtp_deliver(h, "s@x", kTwo, 2, kMsg, strlen(kMsg), NULL, NULL), LMTP_ERR_TIMEOUT);
    assert_true(now_ms() - t0 >= 600);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_UNKNOWN);
    lmtp_free(h);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(deliver_each, start_server, stop_server),
        cmocka_unit_test_setup_teardown(step_api, start_server, stop_server),
        cmocka_unit_test_setup_teardown(batch, start_server, stop_server),
        cmocka_unit_test_setup_teardown(strict_replies, start_server, stop_server),
    };
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/nsm-lmtp.pl\n", argv[0]);
        return 2;
    }
    g_script = argv[1];
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
