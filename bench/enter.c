/* The benchmark's reference (f), the kernel floor of entering: the work the
 * kernel does for any wrapper that puts a command into a running container
 * and drops every privilege, with none of cagepipe's looking up and
 * checking. It trusts its arguments and checks nothing, so it is a
 * measuring stick only, never a delivery path.
 *     enter PID UID GID [--into V2DIR] [TASKS]... -- COMMAND [ARG]...
 * PID is the container's init (host pid namespace); V2DIR its cgroup v2
 * directory, which the command is born in (clone3 CLONE_INTO_CGROUP, Linux
 * 5.7); TASKS the `tasks` files of its v1 cgroups, which the child writes
 * itself into. The child is started as cagepipe starts it, on x86_64: on
 * the parent's memory until its exec (clone3 CLONE_VM|CLONE_VFORK, on a
 * stack of its own), the cheapest start there is; elsewhere by a fork.
 * The same steps as cagepipe, in the same order: capabilities
 * raised once; the namespace files, the root and the cgroup files opened
 * on the host; every namespace entered but the cgroup one, and the root,
 * before the fork (the command must be born in the pid namespace); the
 * child joins the v1 cgroups, enters the cgroup namespace, sets its ids,
 * drops the bounding set, sets no_new_privs, empties its capabilities and
 * execs. The parent waits and ends as the command did. Any failing step
 * ends it with 75 and a line on stderr; 127 if the command cannot be
 * executed.
 * Installed like cagepipe by bench/run.sh (root:cagepipe 0750, the file
 * capabilities of packaging/file-caps) and run as the delivering user with
 * the cagepipe group. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The order cagepipe enters them in; cgroup last, in the child, after it
 * has joined the cgroups (the host's view of them). */
static const struct {
    const char *name;
    int flag;
} kinds[] = {
    {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID},
    {"time", CLONE_NEWTIME}, {"mnt", CLONE_NEWNS}, {"cgroup", CLONE_NEWCGROUP},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])
#define MAX_TASKS 32

static void fail(const char *step)
{
    char line[256];
    int n = snprintf(line, sizeof line, "enter: %s: %s\n", step, strerror(errno));

    if (n > 0 && write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
        _exit(75);
    _exit(75);
}

/* Effective := permitted (raise), or every set emptied (drop). */
static void set_capabilities(int raise)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    memset(data, 0, sizeof data);
    if (raise) {
        if (syscall(SYS_capget, &header, data))
            fail("capget");
        for (size_t i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
            data[i].effective = data[i].permitted;
    }
    if (syscall(SYS_capset, &header, data))
        fail("capset");
}

/* What the child needs, set by main before it starts. */
static int ns[NKINDS], tasks[MAX_TASKS], ntasks;
static uid_t uid;
static gid_t gid;
static char **command;

static int child_steps(void)
{
    gid_t groups[1] = {gid};

    for (int t = 0; t < ntasks; t++)
        if (write(tasks[t], "0", 1) != 1)
            fail("join a v1 cgroup");
    if (ns[NKINDS - 1] >= 0 && setns(ns[NKINDS - 1], CLONE_NEWCGROUP))
        fail("cgroup");
    if (setgroups(1, groups) || setresgid(gid, gid, gid))
        fail("groups");
    /* One call per capability, until the kernel says there is no next
     * one, as cagepipe drops them. */
    for (int cap = 0;; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
            continue;
        if (errno == EINVAL && cap > 0)
            break;
        fail("bounding set");
    }
    if (setresuid(uid, uid, uid))
        fail("uid");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        fail("no_new_privs");
    set_capabilities(0);
    execv(command[0], command);
    _exit(127);
}

#if defined(__x86_64__)
static char child_stack[64 << 10] __attribute__((aligned(16)));

/* clone3 with the child on `child_stack`, calling child_steps there (it
 * never returns: exec or _exit); the parent sees the pid once the child
 * has exec'd or exited. */
static long clone3_on_stack(struct clone_args *args)
{
    register long ret __asm__("rax") = SYS_clone3;
    register int (*steps)(void) __asm__("r12") = child_steps;

    args->stack = (uint64_t)(uintptr_t)child_stack;
    args->stack_size = sizeof child_stack;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "call *%%r12\n\t"
                     "ud2\n"
                     "1:"
                     : "+r"(ret)
                     : "D"(args), "S"(sizeof *args), "r"(steps)
                     : "rcx", "r11", "memory");
    return ret;
}
#endif

static uint32_t number(const char *s)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || n > UINT32_MAX) {
        errno = EINVAL;
        fail(s);
    }
    return (uint32_t)n;
}

int main(int argc, char **argv)
{
    int into = -1, root, status, i;
    char path[64];
    pid_t child;

    if (argc < 6)
        return 64;
    uid = number(argv[2]);
    gid = number(argv[3]);
    set_capabilities(1);

    for (size_t k = 0; k < NKINDS; k++) {
        snprintf(path, sizeof path, "/proc/%s/ns/%s", argv[1], kinds[k].name);
        ns[k] = open(path, O_RDONLY | O_CLOEXEC);
        if (ns[k] < 0 && errno != ENOENT)
            fail(path);
    }
    snprintf(path, sizeof path, "/proc/%s/root", argv[1]);
    root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        fail(path);
    for (i = 4; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--into") && i + 1 < argc) {
            into = open(argv[++i], O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (into < 0)
                fail(argv[i]);
        } else if (ntasks < MAX_TASKS) {
            tasks[ntasks] = open(argv[i], O_WRONLY | O_CLOEXEC);
            if (tasks[ntasks++] < 0)
                fail(argv[i]);
        } else {
            errno = E2BIG;
            fail(argv[i]);
        }
    }
    if (i + 1 >= argc)
        return 64;
    command = argv + i + 1;

    for (size_t k = 0; k + 1 < NKINDS; k++)
        if (ns[k] >= 0 && setns(ns[k], kinds[k].flag))
            fail(kinds[k].name);
    if (fchdir(root) || chroot("."))
        fail("root");

    {
        struct clone_args args = {.exit_signal = SIGCHLD};

        if (into >= 0) {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = (uint64_t)into;
        }
#if defined(__x86_64__)
        long r;

        args.flags |= CLONE_VM | CLONE_VFORK;
        r = clone3_on_stack(&args);
        if (r < 0) {
            errno = (int)-r;
            fail("clone3");
        }
        child = (pid_t)r;
#else
        child = (pid_t)syscall(SYS_clone3, &args, sizeof args);
        if (child < 0)
            fail("clone3");
        if (child == 0)
            child_steps();
#endif
    }

    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            fail("wait");
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    signal(WTERMSIG(status), SIG_DFL);
    raise(WTERMSIG(status));
    return 128 + WTERMSIG(status);
}
