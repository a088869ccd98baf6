/* The benchmark's do-nothing wrapper, reference (d): what any wrapper in
 * Exim's force_command costs before it does anything of its own. Forks,
 * execs its arguments, waits, and ends as the command did.
 *     wrapper COMMAND [ARG]...
 * Built by bench/run.sh with the C library cagepipe's build uses (dynamic,
 * and static for the static PIE). */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int status;
    pid_t pid;

    if (argc < 2)
        return 64;
    pid = fork();
    if (pid < 0)
        return 75;
    if (pid == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 75;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    signal(WTERMSIG(status), SIG_DFL);
    raise(WTERMSIG(status));
    return 128 + WTERMSIG(status);
}
