/* bench-spawn FILE PROGRAM [ARGS...]: runs PROGRAM (stdin, stdout and stderr
 * shared) and writes its peak resident set in KB to FILE, then exits with its
 * status. The runner needs this small go-between: Linux keeps a process's
 * ru_maxrss across fork and exec, so a client started straight from the
 * runner would report at least the runner's own size. This program is tiny,
 * so the client it forks starts from next to nothing. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench-spawn FILE PROGRAM [ARGS...]\n");
        return 64;
    }
    pid_t pid = fork();
    if (pid < 0) return 71;
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 71;
    FILE *f = fopen(argv[1], "w");
    if (f) {
        fprintf(f, "%ld\n", ru.ru_maxrss);
        fclose(f);
    }
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
