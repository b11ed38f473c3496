/*
 * fastpost set-gid launcher: the only code that runs with the effective group
 * setgid_group before a fixed Python program takes over (docs/submission.md).
 *
 * Postfix counterpart: the set-gid postdrop(1) and postqueue(1) binaries.
 *
 * Built and installed (mode 2755, root:setgid_group) by `fastpost link-commands -g`,
 * which writes launcher_conf.h next to a copy of this file with five constants fixed
 * at build time:
 *
 *     FP_PYTHON   absolute path of the Python interpreter (root-owned)
 *     FP_BOOT     the program given to "python -I -S -B -c": it puts the fastpost
 *                 installation's directories (root-owned) first on sys.path and calls
 *                 fastpost.cli.setgid.launched(sys.argv[1:])
 *     FP_MODE     "postdrop" or "postqueue"
 *     FP_CONFIG   the configuration directory of the instance it was built for
 *     FP_NAME     the program name for messages
 *
 * What it does, in order: makes sure descriptors 0, 1 and 2 are open (a closed one is
 * opened on /dev/null, so nothing the helper writes can land in a file the caller
 * arranged), closes every other descriptor, refuses too many or too long arguments,
 * and replaces the environment by a fixed one (PATH, LANG). Then it executes
 *
 *     FP_PYTHON -I -S -B -c FP_BOOT FP_MODE FP_CONFIG -- ARGS...
 *
 * -I: Python ignores PYTHON* variables, the user's site directory and the current
 * directory; -S: no site.py and no .pth files (FP_BOOT lists the import directories,
 * site-packages included; it also starts faster); -B: no bytecode written (the
 * precompiled .pyc files of the installation are read); the caller can choose neither the interpreter, nor the code, nor the
 * configuration. The caller's own -c option is not passed on (FP_CONFIG is).
 *
 * Failures: a message "NAME: fatal: ..." on standard error and exit 75 (EX_TEMPFAIL)
 * when the interpreter cannot be executed, 64 (EX_USAGE) for bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher_conf.h"
#include "fd_hygiene.h"

#define MAX_ARGS 64
#define MAX_ARG_LEN 4096

static void fatal(int status, const char *what)
{
    fprintf(stderr, "%s: fatal: %s\n", FP_NAME, what);
    exit(status);
}

int main(int argc, char **argv)
{
    char *nargv[MAX_ARGS + 8];
    char *nenv[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};
    int i, n = 0;

    fd_hygiene();

    if (argc < 1)
        fatal(64, "no program name");
    if (argc - 1 > MAX_ARGS)
        fatal(64, "too many arguments");
    for (i = 1; i < argc; i++)
        if (strlen(argv[i]) > MAX_ARG_LEN)
            fatal(64, "argument too long");

    umask(022);
    nargv[n++] = (char *) FP_PYTHON;
    nargv[n++] = "-I";
    nargv[n++] = "-S";
    nargv[n++] = "-B";
    nargv[n++] = "-c";
    nargv[n++] = (char *) FP_BOOT;
    nargv[n++] = (char *) FP_MODE;
    nargv[n++] = (char *) FP_CONFIG;
    nargv[n++] = "--";
    for (i = 1; i < argc; i++)
        nargv[n++] = argv[i];
    nargv[n] = NULL;
    execve(FP_PYTHON, nargv, nenv);
    fprintf(stderr, "%s: fatal: cannot execute %s: %s\n", FP_NAME, FP_PYTHON, strerror(errno));
    return 75;
}
