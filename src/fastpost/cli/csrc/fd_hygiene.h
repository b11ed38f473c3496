/*
 * fd_hygiene.h: the descriptor hygiene of fastpost's set-gid programs (launcher.c,
 * postdrop.c; docs/submission.md, "The compiled postdrop").
 *
 * fd_hygiene() makes sure descriptors 0, 1 and 2 are open (a closed one is opened on
 * /dev/null, so nothing written to standard output or error can land in a file the
 * caller arranged) and closes every other descriptor the caller passed in. It cannot
 * report anything: a descriptor that cannot be opened ends the program with 75.
 *
 * Included as source (static): the builders copy the csrc headers next to the .c file.
 */
#ifndef FP_FD_HYGIENE_H
#define FP_FD_HYGIENE_H

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void fd_hygiene(void)
{
    long maxfd;
    int fd;

    /* 0, 1, 2 open: open("/dev/null") returns the lowest free descriptor. */
    for (fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int got = open("/dev/null", O_RDWR);
            if (got != fd)
                _exit(75);
        }
    }
    /* close_range(2): one system call, where a loop up to RLIMIT_NOFILE can be tens
     * of thousands of close() calls (most of such a program's CPU time) */
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
    {
        maxfd = sysconf(_SC_OPEN_MAX);
        if (maxfd < 0 || maxfd > 65536)
            maxfd = 65536;
        for (fd = 3; fd < maxfd; fd++)
            (void) close(fd);
    }
}

#endif
