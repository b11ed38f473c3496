/*
 * fastpost-postdrop: the set-gid postdrop in C for a well-formed stream; every other
 * case in the Python helper, which then sees exactly the same input.
 *
 * Postfix counterpart: postdrop(1). Security review: docs/submission.md, "The compiled
 * postdrop". Built and installed (mode 2755, root:setgid_group) by
 * `fastpost link-commands -g` (fastpost.cli.setgid.build_helpers) with the constants of
 * launcher_conf.h (FP_PYTHON, FP_BOOT, FP_MODE, FP_CONFIG, FP_NAME: see launcher.c).
 *
 * In order:
 *   1. the descriptor and environment hygiene of launcher.c: 0-2 open (on /dev/null
 *      if closed), every other descriptor closed, umask 022; no environment variable
 *      is read, and the fall-back runs with a fixed environment;
 *   2. any argument -> the Python helper (it prints postdrop's usage error);
 *   3. FP_CONFIG/main.cf, read as fastpost.mail.maincf reads logical lines, for
 *      queue_directory, pickup_service_name, message_size_limit and
 *      authorized_submit_users; a value with "$", a queue_directory not given, a
 *      non-numeric size limit, a submit list other than the default static:anyone, an
 *      unreadable main.cf -> the Python helper, before standard input is read; a line
 *      that is not "name = value" -> Postfix's fatal error naming the file and line,
 *      exit 1, and Postfix's warnings for a continuation line with nothing to continue
 *      and a name defined again with another value (maildrop_write.h);
 *   4. standard input, at most 2 x message_size_limit + 1 MiB (as the helper:
 *      "postdrop: fatal: uid=N: message too large", exit 73);
 *   5. the stream, record by record, as fastpost.mail.maildrop.parse reads it (T f F <
 *      i A S o n R in the envelope, M, N/L content, X, E, nothing after); numbers must
 *      be plain ASCII digits. Anything this reader does not take -- a malformed stream,
 *      or one parse() would take but that this strict reader does not -- is handed to
 *      the Python helper *with the bytes already read* (a memfd as its standard
 *      input), so every refusal is the Python code's, word for word;
 *   6. the file written is maildrop.encode() of what parse() returned, with no
 *      attribute but verify=1 and postdrop's own arrival time (what the helper
 *      writes: a differential test compares the two), under a dot-name (O_EXCL,
 *      O_NOFOLLOW), mode 0644 once complete, fsync'd, renamed, made durable with
 *      syncfs (the group may write maildrop, 0730, not read it); owned by the caller;
 *   7. pickup woken through $queue_directory/public/$pickup_service_name.
 *
 * Failures: "postdrop: fatal: DIR: cannot write the message: REASON", exit 75, nothing
 * left behind; "postdrop: fatal: out of memory", 75; the Python helper's otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "launcher_conf.h"
#define FP_PROG "postdrop"
#define FP_CONFIG_FATAL 1       /* a main.cf syntax error: Postfix's postdrop exits 1 */
#include "fd_hygiene.h"
#include "maildrop_write.h"
#include "mainvalues.h"

#define MAX_ARGS 64
#define MAX_ARG_LEN 4096
#define LINE_PIECE 2048
#define MAX_RECORD (1 << 20)

/* record types (fastpost.mail.rectype, Postfix's rec_type.h) */
#define T_TIME 'T'
#define T_FLGS 'f'
#define T_FULL 'F'
#define T_RET '<'
#define T_ENVID 'i'
#define T_ATTR 'A'
#define T_FROM 'S'
#define T_ORCPT 'o'
#define T_NOTIFY 'n'
#define T_RCPT 'R'
#define T_MESG 'M'
#define T_NORM 'N'
#define T_CONT 'L'
#define T_XTRA 'X'
#define T_END 'E'

static int g_argc;
static char **g_argv;
static const char *g_input;     /* what was read from standard input (for the fall-back) */
static size_t g_input_len;
static int g_have_input;

/* The Python helper, exactly as launcher.c starts it; standard input is the bytes read
 * so far, when any were read (a memfd), so it decides on the same stream. */
static void fallback(void)
{
    char *nargv[MAX_ARGS + 10];
    char *nenv[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};
    int n = 0, i;

    if (g_have_input) {
        int mfd = memfd_create("postdrop-input", MFD_CLOEXEC);
        size_t off = 0;

        if (mfd < 0) {
            fprintf(stderr, "postdrop: fatal: memfd_create: %s\n", strerror(errno));
            exit(75);
        }
        while (off < g_input_len) {
            ssize_t w = write(mfd, g_input + off, g_input_len - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                fprintf(stderr, "postdrop: fatal: memfd write: %s\n", strerror(errno));
                exit(75);
            }
            off += (size_t) w;
        }
        if (lseek(mfd, 0, SEEK_SET) != 0 || dup2(mfd, 0) != 0) {
            fprintf(stderr, "postdrop: fatal: memfd: %s\n", strerror(errno));
            exit(75);
        }
        close(mfd);
    }
    nargv[n++] = (char *) FP_PYTHON;
    nargv[n++] = "-I";
    nargv[n++] = "-S";
    nargv[n++] = "-B";
    nargv[n++] = "-c";
    nargv[n++] = (char *) FP_BOOT;
    nargv[n++] = (char *) FP_MODE;
    nargv[n++] = (char *) FP_CONFIG;
    nargv[n++] = "--";
    for (i = 1; i < g_argc; i++)
        nargv[n++] = g_argv[i];
    nargv[n] = NULL;
    execve(FP_PYTHON, nargv, nenv);
    fprintf(stderr, "%s: fatal: cannot execute %s: %s\n", FP_NAME, FP_PYTHON, strerror(errno));
    exit(75);
}

/* -- the stream ------------------------------------------------------------------ */

struct rec {
    int type;
    const char *data;
    size_t len;
};

/* The next record at *pos (1), the end of the input (0), or anything split_records
 * would not take whole: a type 0, a length varint longer than 4 bytes, a record longer
 * than MAX_RECORD, a partial record at the end (-1: the helper reports it). */
static int next_record(const char *in, size_t len, size_t *pos, struct rec *r)
{
    size_t p = *pos, length = 0;
    int shift = 0, i;

    if (p >= len)
        return 0;
    r->type = (unsigned char) in[p++];
    if (r->type == 0)
        return -1;
    for (i = 0;; i++) {
        unsigned char byte;

        if (i >= 4 || p >= len)
            return -1;
        byte = (unsigned char) in[p++];
        length |= (size_t) (byte & 0x7f) << shift;
        shift += 7;
        if (!(byte & 0x80))
            break;
    }
    if (length > MAX_RECORD || length > len - p)
        return -1;
    r->data = in + p;
    r->len = length;
    *pos = p + length;
    return 1;
}

/* Plain ASCII digits, at most ``most`` of them (what int() surely reads the same way;
 * 18 digits fit a 64-bit long). */
static int digits_max(const char *s, size_t len, long *value, size_t most)
{
    size_t i;
    long v = 0;

    if (len == 0 || len > most)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *value = v;
    return 1;
}

static int digits(const char *s, size_t len, long *value)
{
    return digits_max(s, len, value, 9);
}

/* T: "SECONDS" or "SECONDS MICROSECONDS", up to 18 digits each (its value is not kept:
 * postdrop's own time). */
static int time_ok(const char *s, size_t len)
{
    const char *sp = memchr(s, ' ', len);
    long v;

    if (sp == NULL)
        return digits_max(s, len, &v, 18);
    return digits_max(s, (size_t) (sp - s), &v, 18) &&
        digits_max(sp + 1, len - (size_t) (sp - s) - 1, &v, 18);
}

struct slice {
    const char *data;
    size_t len;
    int set;
};

/* Parse like maildrop.parse and write like maildrop.encode (see the top of the file);
 * 0 when the strict reader does not take the stream (then: the Python helper). */
static int rewrite(const char *in, size_t len, struct buf *out)
{
    struct rec r;
    size_t pos = 0;
    long flags = 0, notify = 0, v;
    struct slice full = {0}, ret = {0}, envid = {0}, sender = {0}, orcpt = {0};
    struct buf rcpts = {0}, content = {0};
    int verify_attrs = 0, got;
    struct timeval tv;
    char num[64];
    size_t start, i;

    /* envelope */
    for (;;) {
        got = next_record(in, len, &pos, &r);
        if (got <= 0)
            return 0;
        switch (r.type) {
        case T_TIME:
            if (!time_ok(r.data, r.len))
                return 0;
            break;
        case T_FLGS:
            if (!digits(r.data, r.len, &flags))
                return 0;
            break;
        case T_FULL:
            full = (struct slice) {r.data, r.len, 1};
            break;
        case T_RET:
            ret = (struct slice) {r.data, r.len, 1};
            break;
        case T_ENVID:
            envid = (struct slice) {r.data, r.len, 1};
            break;
        case T_ATTR:
            if (memchr(r.data, '=', r.len) == NULL)
                return 0;
            if (r.len == 8 && memcmp(r.data, "verify=1", 8) == 0)
                verify_attrs++;
            break;              /* any other attribute is dropped, as the helper does */
        case T_FROM:
            sender = (struct slice) {r.data, r.len, 1};
            break;
        case T_ORCPT:
            orcpt = (struct slice) {r.data, r.len, 1};
            break;
        case T_NOTIFY:
            if (!digits(r.data, r.len, &notify))
                return 0;
            break;
        case T_RCPT:
            if (orcpt.set && orcpt.len)
                record(&rcpts, T_ORCPT, orcpt.data, orcpt.len);
            if (notify) {
                snprintf(num, sizeof(num), "%ld", notify);
                record(&rcpts, T_NOTIFY, num, strlen(num));
            }
            record(&rcpts, T_RCPT, r.data, r.len);
            orcpt.set = 0;
            orcpt.len = 0;
            notify = 0;
            break;
        case T_MESG:
            goto content;
        default:
            return 0;
        }
    }
  content:
    for (;;) {
        got = next_record(in, len, &pos, &r);
        if (got <= 0)
            return 0;
        if (r.type == T_NORM) {
            buf_add(&content, r.data, r.len);
            buf_add(&content, "\n", 1);
        } else if (r.type == T_CONT) {
            buf_add(&content, r.data, r.len);
        } else if (r.type == T_XTRA) {
            break;
        } else {
            return 0;
        }
    }
    if (next_record(in, len, &pos, &r) != 1 || r.type != T_END || pos != len || !sender.set)
        return 0;

    /* encode(): T (now), f, F, <, i, A verify=1, S, recipients, M, N/L, X, E */
    gettimeofday(&tv, NULL);
    snprintf(num, sizeof(num), "%ld %ld", (long) tv.tv_sec, (long) tv.tv_usec);
    record(out, T_TIME, num, strlen(num));
    if (flags) {
        snprintf(num, sizeof(num), "%ld", flags);
        record(out, T_FLGS, num, strlen(num));
    }
    if (full.set)
        record(out, T_FULL, full.data, full.len);
    if (ret.set && ret.len)
        record(out, T_RET, ret.data, ret.len);
    if (envid.set && envid.len)
        record(out, T_ENVID, envid.data, envid.len);
    for (v = 0; v < verify_attrs; v++)
        record(out, T_ATTR, "verify=1", 8);
    record(out, T_FROM, sender.data, sender.len);
    buf_add(out, rcpts.data, rcpts.len);
    record(out, T_MESG, "", 0);
    /* content.split(b"\n") with a last empty piece dropped; pieces of LINE_PIECE */
    start = 0;
    for (i = 0; i <= content.len; i++) {
        if (i == content.len || content.data[i] == '\n') {
            size_t line_len = i - start;
            const char *line = content.data ? content.data + start : "";

            if (i == content.len && line_len == 0)
                break;
            while (line_len > LINE_PIECE) {
                record(out, T_CONT, line, LINE_PIECE);
                line += LINE_PIECE;
                line_len -= LINE_PIECE;
            }
            record(out, T_NORM, line, line_len);
            start = i + 1;
        }
    }
    record(out, T_XTRA, "", 0);
    record(out, T_END, "", 0);
    free(rcpts.data);
    free(content.data);
    return 1;
}

/* -- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct wanted want[] = {
        {"queue_directory", NULL}, {"pickup_service_name", NULL},
        {"message_size_limit", NULL}, {"authorized_submit_users", NULL}, {NULL, NULL}};
    const char *queue, *service;
    long limit = 10240000;
    size_t cap = 0, i;
    struct buf in = {0}, out = {0}, dir = {0}, judged = {0};
    char chunk[65536];
    ssize_t got;

    /* 1. descriptors 0-2 open, the others closed; umask */
    fd_hygiene();
    umask(022);
    g_argc = argc;
    g_argv = argv;
    if (argc - 1 > MAX_ARGS) {
        fprintf(stderr, "%s: fatal: too many arguments\n", FP_NAME);
        return 64;
    }
    for (i = 1; i < (size_t) argc; i++) {
        if (strlen(argv[i]) > MAX_ARG_LEN) {
            fprintf(stderr, "%s: fatal: argument too long\n", FP_NAME);
            return 64;
        }
    }
    /* 2. arguments: the helper's usage error */
    if (argc != 1)
        fallback();
    /* 3. main.cf */
    read_main_cf(FP_CONFIG, want, 0);
    /* the global parameters' values, as Postfix's postdrop judges them at start */
    switch (judge_globals(FP_CONFIG "/main.cf", &judged)) {
    case 1:
        cf_warnings_flush();
        (void) !write(2, judged.data, judged.len);
        return FP_CONFIG_FATAL;
    case -1:
        fallback();
    }
    for (i = 0; want[i].name; i++)
        if (want[i].value && strchr(want[i].value, '$'))
            fallback();
    queue = want[0].value;
    service = want[1].value ? want[1].value : "pickup";
    if (queue == NULL || queue[0] != '/' || service[0] == '\0' || strchr(service, '/'))
        fallback();
    if (want[2].value && !digits(want[2].value, strlen(want[2].value), &limit))
        fallback();
    if (want[3].value && strcmp(want[3].value, "static:anyone") != 0)
        fallback();
    if (limit > 0)
        cap = (size_t) limit * 2 + (1u << 20);
    /* 4. standard input */
    g_have_input = 1;
    for (;;) {
        got = read(0, chunk, sizeof(chunk));
        if (got < 0) {
            if (errno == EINTR)
                continue;
            g_input = in.data;
            g_input_len = in.len;
            fallback();         /* the helper meets the same read error */
        }
        if (got == 0)
            break;
        if (cap && in.len + (size_t) got > cap) {
            cf_warnings_flush();
            fprintf(stderr, "postdrop: fatal: uid=%u: message too large\n", (unsigned) getuid());
            return 73;
        }
        buf_add(&in, chunk, (size_t) got);
    }
    g_input = in.data;
    g_input_len = in.len;
    /* 5., 6. the stream, the file */
    if (!rewrite(in.data ? in.data : "", in.len, &out))
        fallback();
    /* main.cf's warnings, now that the request stays here (else the helper's own) */
    cf_warnings_flush();
    buf_add(&dir, queue, strlen(queue));
    buf_add(&dir, "/maildrop", 10);
    drop(dir.data, &out);
    /* 7. pickup */
    wake_pickup(queue, service);
    return 0;
}
