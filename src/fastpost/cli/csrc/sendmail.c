/*
 * fastpost-sendmail: the plain local submission in C; every other case in Python.
 *
 * Postfix counterpart: sendmail(1) with postdrop(1)'s part, for the common case only.
 * Why it exists and what it measured: docs/submission.md, "sendmail speed".
 *
 * Built by `./dev build` (fastpost.cli.frontend) into the virtualenv's bin/ as
 * fastpost-sendmail, with two constants in a generated frontend_conf.h:
 *
 *     FP_PYTHON   the interpreter
 *     FP_BOOT     the program given to "python -I -S -B -c": fastpost's import
 *                 directories first on sys.path, then fastpost.cli.sendmail.main
 *
 * The command line is sendmail's (fastpost.cli.sendmail), optionally after "-c DIR".
 * This program handles the plain case itself: recipients, -f/-r ADDR, -F NAME, -t, -i,
 * -oi, "--"; a main.cf (from -c, $FASTPOST_CONFIG, $MAIL_CONFIG or /etc/fastpost)
 * whose queue_directory, pickup_service_name and authorized_submit_users have no "$"
 * and whose authorized_submit_users is the default static:anyone; a maildrop
 * directory the user may write, or else the set-gid $command_directory/
 * fastpost-postdrop (installed by link-commands -g), which then gets the stream on a
 * pipe and whose exit status is returned, as the Python command does. Anything else --
 * another option, a main.cf this reader would have to expand or cannot parse, a user
 * who cannot write maildrop when there is no helper, a sender that is not plain
 * printable ASCII -- makes it execute the Python command
 * with the same arguments, before it has read a byte of standard input, so that the
 * Python code decides and reports exactly as it always does.
 *
 * The file it writes is the maildrop stream of fastpost.mail.maildrop.encode (record
 * types T, f, F, S, R, M, N/L, X, E; content lines split into 2048-byte L pieces),
 * under a dot-name, mode 0644 once complete, fsync'd, renamed, the directory synced;
 * then pickup is woken through $queue_directory/public/$pickup_service_name. A
 * differential test (tests/submission/test_sendmail_fast.py) checks that the records
 * equal the Python writer's for the same input.
 *
 * Failures, as the Python command: "sendmail: fatal: DIR: cannot write the message:
 * REASON" and exit 75 (nothing left behind); 75 also when the interpreter for the
 * fall-back cannot be executed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include "frontend_conf.h"
#define FP_PROG "sendmail"
#define FP_CONFIG_WARN          /* main.cf warnings as Postfix's sendmail; errors: Python's */
#include "maildrop_write.h"
#include "mainvalues.h"

#define LINE_PIECE 2048
#define FLAG_EXTRACT 64

static int g_argc;
static char **g_argv;

/* Hand everything to the Python command (stdin untouched). */
static void fallback(void)
{
    char **nargv = calloc((size_t) g_argc + 8, sizeof(char *));
    int n = 0, i;

    if (nargv == NULL)
        _exit(75);
    nargv[n++] = (char *) FP_PYTHON;
    nargv[n++] = "-I";
    nargv[n++] = "-S";
    nargv[n++] = "-B";
    nargv[n++] = "-c";
    nargv[n++] = (char *) FP_BOOT;
    for (i = 1; i < g_argc; i++)
        nargv[n++] = g_argv[i];
    nargv[n] = NULL;
    execv(FP_PYTHON, nargv);
    fprintf(stderr, "sendmail: fatal: cannot execute %s: %s\n", FP_PYTHON, strerror(errno));
    exit(75);
}

/* -- through the set-gid postdrop ------------------------------------------------ */

/* $command_directory/fastpost-postdrop when it is what `link-commands -g` installs (a
 * root-owned set-gid file), else NULL: as fastpost.cli.setgid.helper_path. */
static char *postdrop_helper(const char *command_directory)
{
    struct buf path = {0};
    struct stat st;

    buf_add(&path, command_directory, strlen(command_directory));
    buf_add(&path, "/fastpost-postdrop", 19);
    if (stat(path.data, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_ISGID) &&
        st.st_uid == 0)
        return path.data;
    free(path.data);
    return NULL;
}

/* The stream to the helper's standard input; its exit status is ours (it reports its
 * own errors and wakes pickup), as drop_stream() in fastpost.cli.sendmail does. */
static int through_helper(const char *helper, const struct buf *data)
{
    int fds[2], status;
    size_t off = 0;
    pid_t pid;

    signal(SIGPIPE, SIG_IGN);   /* the helper may refuse before it read everything */
    if (pipe2(fds, O_CLOEXEC) < 0)
        fallback();
    pid = fork();
    if (pid < 0)
        fallback();
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        if (dup2(fds[0], 0) < 0)
            _exit(75);
        execl(helper, helper, (char *) NULL);
        fprintf(stderr, "sendmail: fatal: cannot execute %s: %s\n", helper, strerror(errno));
        _exit(75);
    }
    close(fds[0]);
    while (off < data->len) {
        ssize_t n = write(fds[1], data->data + off, data->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;              /* EPIPE: the helper stopped reading; its status says why */
        }
        off += (size_t) n;
    }
    close(fds[1]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 75;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 75;
}

/* -- the plain submission -------------------------------------------------------- */

static const char *nonempty_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int main(int argc, char **argv)
{
    const char *config_dir = NULL, *sender = NULL, *fullname = NULL;
    const char *queue, *service, *authorized, *commands;
    char *helper = NULL;
    int extract = 0, dots = 1, i = 1, nr = 0, r;
    int *rcpts;
    struct wanted want[] = {
        {"queue_directory", NULL}, {"pickup_service_name", NULL},
        {"authorized_submit_users", NULL}, {"command_directory", NULL}, {NULL, NULL}
    };
    struct buf dir = {0}, out = {0}, judged = {0};
    struct timeval tv;
    char stamp[64], *line = NULL;
    size_t cap = 0, slen;
    ssize_t len;

    g_argc = argc;
    g_argv = argv;
    rcpts = calloc((size_t) argc + 1, sizeof(int));
    if (rcpts == NULL)
        fallback();
    if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
        config_dir = argv[2];
        i = 3;
    }
    for (; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++)
                rcpts[nr++] = i;
            break;
        }
        if (a[0] != '-') {
            rcpts[nr++] = i;
            continue;
        }
        if (a[1] == 'f' || a[1] == 'r' || a[1] == 'F') {
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (v == NULL)
                fallback();
            if (a[1] == 'F')
                fullname = v;
            else
                sender = v;
            continue;
        }
        if (strcmp(a, "-t") == 0)
            extract = 1;
        else if (strcmp(a, "-i") == 0 || strcmp(a, "-oi") == 0)
            dots = 0;
        else
            fallback();         /* "-", grouped flags, every other option */
    }
    if (nr == 0 && !extract)
        fallback();             /* the usage message is Python's */
    if (config_dir == NULL || !*config_dir)
        config_dir = nonempty_env("FASTPOST_CONFIG");
    if (config_dir == NULL)
        config_dir = nonempty_env("MAIL_CONFIG");
    if (config_dir == NULL)
        config_dir = "/etc/fastpost";
    read_main_cf(config_dir, want, 1);
    /* a global parameter's value Postfix's sendmail refuses, or one to expand first:
     * the Python command's to report (with its exit status 75) */
    if (judge_globals("", &judged) != 0)
        fallback();
    queue = want[0].value ? want[0].value : "/var/spool/fastpost";
    service = want[1].value ? want[1].value : "pickup";
    authorized = want[2].value ? want[2].value : "static:anyone";
    commands = want[3].value ? want[3].value : "/usr/sbin";
    if (!*queue || strchr(queue, '$') || strchr(service, '$') ||
        strcmp(authorized, "static:anyone") != 0)
        fallback();
    buf_add(&dir, queue, strlen(queue));
    if (queue[strlen(queue) - 1] != '/')
        buf_add(&dir, "/", 1);
    buf_add(&dir, "maildrop", 9);
    if (access(dir.data, W_OK | X_OK) != 0) {
        /* a user outside setgid_group: the compiled set-gid postdrop takes the stream
         * (fastpost-postdrop); without one, the Python command reports the problem */
        if (strchr(commands, '$') || (helper = postdrop_helper(commands)) == NULL)
            fallback();
    }
    if (sender == NULL) {
        struct passwd *pw = getpwuid(getuid());
        if (pw == NULL)
            fallback();
        sender = pw->pw_name;
    }
    for (r = 0; sender[r]; r++)
        if ((unsigned char) sender[r] <= 0x20 || (unsigned char) sender[r] >= 0x7f)
            fallback();         /* Python's str.strip() decides what is trimmed */
    slen = strlen(sender);
    if (slen >= 2 && sender[0] == '<' && sender[slen - 1] == '>') {
        sender++;
        slen -= 2;
    }
    if (fullname == NULL)
        fullname = getenv("NAME");

    /* main.cf's warnings (Postfix's sendmail prints them too), now that no fallback
     * to the Python command, which would print its own, can follow */
    cf_warnings_flush();
    /* the envelope: T is written last, so start the content in a second buffer */
    if (extract)
        record(&out, 'f', "64", 2);
    if (fullname != NULL)
        record(&out, 'F', fullname, strlen(fullname));
    record(&out, 'S', sender, slen);
    for (r = 0; r < nr; r++)
        record(&out, 'R', argv[rcpts[r]], strlen(argv[rcpts[r]]));
    record(&out, 'M', "", 0);
    while ((len = getline(&line, &cap, stdin)) > 0) {
        size_t n = (size_t) len;
        const char *p = line;

        if (n >= 2 && line[n - 2] == '\r' && line[n - 1] == '\n')
            n -= 2;
        else if (line[n - 1] == '\n')
            n -= 1;
        if (dots && n == 1 && line[0] == '.')
            break;
        while (n > LINE_PIECE) {
            record(&out, 'L', p, LINE_PIECE);
            p += LINE_PIECE;
            n -= LINE_PIECE;
        }
        record(&out, 'N', p, n);
    }
    if (ferror(stdin)) {
        fprintf(stderr, "sendmail: fatal: error reading standard input: %s\n", strerror(errno));
        exit(75);
    }
    record(&out, 'X', "", 0);
    record(&out, 'E', "", 0);
    {
        struct buf all = {0};

        gettimeofday(&tv, NULL);
        snprintf(stamp, sizeof(stamp), "%ld %ld", (long) tv.tv_sec, (long) tv.tv_usec);
        record(&all, 'T', stamp, strlen(stamp));
        buf_add(&all, out.data, out.len);
        if (helper != NULL)
            return through_helper(helper, &all);
        drop(dir.data, &all);
    }
    wake_pickup(queue, service);
    return 0;
}
