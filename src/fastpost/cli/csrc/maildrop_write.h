/*
 * maildrop_write.h: what the compiled postdrop (postdrop.c) and sendmail front end
 * (sendmail.c) share: a growing buffer, maildrop records, main.cf's logical lines for a
 * few names, writing one maildrop file durably, and waking pickup.
 *
 * The includer defines FP_PROG (the program name in messages: "postdrop",
 * "sendmail") and its own fallback() (hand everything to the Python command) before
 * including this file. Python counterparts: fastpost.mail.maildrop (encode),
 * fastpost.mail.maincf (read_logical_lines), fastpost.cli.sendmail (drop_stream).
 *
 * Failures: "FP_PROG: fatal: out of memory" and "FP_PROG: fatal: DIR: cannot write
 * the message: REASON", exit 75, nothing left behind; a main.cf line this reader does
 * not take, or one it cannot read, is the Python command's to report (fallback()).
 *
 * Included as source (static): the builders copy the csrc headers next to the .c file.
 */
#ifndef FP_MAILDROP_WRITE_H
#define FP_MAILDROP_WRITE_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef FP_PROG
#error "define FP_PROG before including maildrop_write.h"
#endif

#define C_SPACE " \t\n\v\f\r"

static void fallback(void);

static void out_of_memory(void)
{
    fprintf(stderr, FP_PROG ": fatal: out of memory\n");
    exit(75);
}

/* -- a growing byte buffer ------------------------------------------------------- */

struct buf {
    char *data;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t len)
{
    if (len > ((size_t) -1) / 4 - b->len)
        out_of_memory();
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL)
            out_of_memory();
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

/* One record: type byte, length in 7-bit groups (low first, high bit: more), payload. */
static void record(struct buf *b, int type, const char *data, size_t len)
{
    unsigned char head[16];
    size_t n = 0, left = len;

    head[n++] = (unsigned char) type;
    for (;;) {
        unsigned char byte = left & 0x7f;
        left >>= 7;
        if (left) {
            head[n++] = byte | 0x80;
        } else {
            head[n++] = byte;
            break;
        }
    }
    buf_add(b, head, n);
    buf_add(b, data, len);
}

/* -- main.cf (the logical-line rules of fastpost.mail.maincf) ---------------------- */

/*
 * What the reader does with a main.cf it cannot take. By default every such case is
 * the Python command's: fallback(). An includer that defines FP_CONFIG_FATAL (an exit
 * status: postdrop.c, 1 as Postfix's postdrop) answers itself, as Postfix 3.7's
 * programs do:
 *   "PROG: fatal: PATH, line N: missing '=' after attribute name: "TEXT""
 *   "PROG: fatal: PATH, line N: missing attribute name: "TEXT""        (exit status)
 * An includer that defines FP_CONFIG_FATAL or FP_CONFIG_WARN (sendmail.c: its errors
 * stay the Python command's) keeps Postfix's warnings (standard error; it goes on):
 *   "PROG: warning: PATH: logical line must not start with whitespace: "TEXT""
 *   "PROG: warning: PATH, line N: overriding earlier entry: NAME=OLD"  (a new value)
 * The warnings are held until cf_warnings_flush(): a request handed to the Python
 * command afterwards is that command's to warn about, so they are never printed twice.
 */

static int is_c_space(char c)
{
    return c != '\0' && strchr(C_SPACE, c) != NULL;
}

static void strip(const char **s, size_t *len)
{
    while (*len && is_c_space(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_c_space((*s)[*len - 1]))
        (*len)--;
}

struct wanted {
    const char *name;
    char *value;        /* NULL: not in main.cf */
    int line;           /* where value was set */
};

#if defined(FP_CONFIG_FATAL) || defined(FP_CONFIG_WARN)
static struct buf g_cf_warnings;        /* "PROG: warning: ...\n" lines, held */

struct seen {
    char *name, *value;
    int line;           /* of the last definition (mainvalues.h names it) */
};
static struct seen *g_seen;
static size_t g_seen_len, g_seen_cap;

static void cf_warn_orphan(const char *path, const char *raw, size_t raw_len)
{
    static const char what[] = ": logical line must not start with whitespace: \"";

    buf_add(&g_cf_warnings, FP_PROG ": warning: ", strlen(FP_PROG ": warning: "));
    buf_add(&g_cf_warnings, path, strlen(path));
    buf_add(&g_cf_warnings, what, strlen(what));
    buf_add(&g_cf_warnings, raw, raw_len <= 30 ? raw_len : 30);
    buf_add(&g_cf_warnings, raw_len <= 30 ? "\"\n" : "...\"\n", raw_len <= 30 ? 2 : 5);
}

static void cf_warnings_flush(void)
{
    if (g_cf_warnings.len)
        (void) !write(2, g_cf_warnings.data, g_cf_warnings.len);
    g_cf_warnings.len = 0;
}

#ifdef FP_CONFIG_FATAL
static void cf_fatal(const char *path, int line, const char *what, const char *text,
                     size_t len)
{
    cf_warnings_flush();
    fprintf(stderr, FP_PROG ": fatal: %s, line %d: %s: \"%.*s\"\n", path, line, what,
            (int) len, text);
    exit(FP_CONFIG_FATAL);
}
#else
#define cf_fatal(path, line, what, text, len) fallback()
#endif

/* A name defined again with another value: Postfix's warning (the same value: none). */
static void cf_seen(const char *path, int line, const char *name, size_t name_len,
                    const char *value, size_t value_len)
{
    size_t i;
    char head[64];

    for (i = 0; i < g_seen_len; i++) {
        struct seen *e = &g_seen[i];

        if (strlen(e->name) != name_len || memcmp(e->name, name, name_len) != 0)
            continue;
        e->line = line;
        if (strlen(e->value) != value_len || memcmp(e->value, value, value_len) != 0) {
            snprintf(head, sizeof(head), ", line %d: overriding earlier entry: ", line);
            buf_add(&g_cf_warnings, FP_PROG ": warning: ", strlen(FP_PROG ": warning: "));
            buf_add(&g_cf_warnings, path, strlen(path));
            buf_add(&g_cf_warnings, head, strlen(head));
            buf_add(&g_cf_warnings, e->name, name_len);
            buf_add(&g_cf_warnings, "=", 1);
            buf_add(&g_cf_warnings, e->value, strlen(e->value));
            buf_add(&g_cf_warnings, "\n", 1);
            free(e->value);
            if ((e->value = strndup(value, value_len)) == NULL)
                out_of_memory();
        }
        return;
    }
    if (g_seen_len == g_seen_cap) {
        g_seen_cap = g_seen_cap ? g_seen_cap * 2 : 64;
        if (g_seen_cap > ((size_t) -1) / 4 / sizeof(*g_seen))
            out_of_memory();
        g_seen = realloc(g_seen, g_seen_cap * sizeof(*g_seen));
        if (g_seen == NULL)
            out_of_memory();
    }
    g_seen[g_seen_len].name = strndup(name, name_len);
    g_seen[g_seen_len].value = strndup(value, value_len);
    g_seen[g_seen_len].line = line;
    if (g_seen[g_seen_len].name == NULL || g_seen[g_seen_len].value == NULL)
        out_of_memory();
    g_seen_len++;
}
#else
#define cf_warn_orphan(path, raw, raw_len) ((void) 0)
#define cf_warnings_flush() ((void) 0)
#define cf_fatal(path, line, what, text, len) fallback()
#define cf_seen(path, line, name, nl, value, vl) ((void) 0)
#endif

static void logical_line(const char *path, int number, const char *line, size_t len,
                         struct wanted *want)
{
    const char *eq = memchr(line, '=', len);
    const char *name = line, *value;
    size_t name_len, value_len, i;

    if (eq == NULL)
        cf_fatal(path, number, "missing '=' after attribute name", line, len);
    name_len = (size_t) (eq - line);
    strip(&name, &name_len);
    for (i = 0; i < name_len; i++)
        if (is_c_space(name[i]))
            cf_fatal(path, number, "missing '=' after attribute name", line, len);
    if (name_len == 0)
        cf_fatal(path, number, "missing attribute name", line, len);
    value = eq + 1;
    value_len = (size_t) (line + len - value);
    strip(&value, &value_len);
    cf_seen(path, number, name, name_len, value, value_len);
    for (; want->name; want++) {
        if (strlen(want->name) == name_len && memcmp(want->name, name, name_len) == 0) {
            free(want->value);
            want->value = strndup(value, value_len);
            if (want->value == NULL)
                out_of_memory();
            want->line = number;
        }
    }
}

/* read_logical_lines() and parse_main_cf() of fastpost.mail.maincf, for the names in
 * want. No main.cf: every default when missing_ok, else fallback() (postdrop's helper
 * says what it means); a file that cannot be read or holds a NUL: fallback(); a line
 * that is not "name = value": cf_fatal() (above). */
static void read_main_cf(const char *config_dir, struct wanted *want, int missing_ok)
{
    struct buf path = {0}, text = {0}, cur = {0};
    char chunk[8192];
    ssize_t got;
    int fd, have_cur = 0, orphan = 0, number = 0, start = 0;
    size_t pos = 0;

    buf_add(&path, config_dir, strlen(config_dir));
    buf_add(&path, "/main.cf", 9);
    fd = open(path.data, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && missing_ok) {
            free(path.data);
            return;
        }
        fallback();
    }
    while ((got = read(fd, chunk, sizeof(chunk))) > 0)
        buf_add(&text, chunk, (size_t) got);
    close(fd);
    if (got < 0 || (text.len && memchr(text.data, '\0', text.len)))
        fallback();
    while (pos <= text.len) {
        const char *raw = text.data ? text.data + pos : "";
        const char *nl = text.len ? memchr(raw, '\n', text.len - pos) : NULL;
        size_t raw_len = nl ? (size_t) (nl - raw) : text.len - pos;
        const char *s = raw;
        size_t s_len = raw_len;

        pos += raw_len + 1;
        number++;
        strip(&s, &s_len);
        if (s_len == 0 || s[0] == '#')
            continue;
        if (raw[0] == ' ' || raw[0] == '\t') {
            if (have_cur) {
                buf_add(&cur, " ", 1);
                buf_add(&cur, s, s_len);
            } else if (!orphan) {
                /* a continuation with nothing to continue: skipped, with a warning */
                cf_warn_orphan(path.data, raw, raw_len);
                orphan = 1;
            }
            continue;
        }
        orphan = 0;
        if (have_cur)
            logical_line(path.data, start, cur.data, cur.len, want);
        cur.len = 0;
        have_cur = 1;
        start = number;
        while (raw_len && is_c_space(raw[raw_len - 1]))
            raw_len--;
        buf_add(&cur, raw, raw_len);
    }
    if (have_cur)
        logical_line(path.data, start, cur.data, cur.len, want);
    free(cur.data);
    free(text.data);
    free(path.data);
}

/* -- writing the file ------------------------------------------------------------ */

static void fail_write(const char *dir, int err)
{
    fprintf(stderr, FP_PROG ": fatal: %s: cannot write the message: %s\n", dir, strerror(err));
    exit(75);
}

static void drop(const char *dir, const struct buf *data)
{
    struct timeval tv;
    unsigned char rnd[3] = {0, 0, 0};
    char name[96];
    struct buf tmp = {0}, final = {0};
    size_t off = 0;
    int fd, dfd, err;

    gettimeofday(&tv, NULL);
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
        fail_write(dir, errno);
    snprintf(name, sizeof(name), "%lX%05lX%X%02X%02X%02X", (unsigned long) tv.tv_sec,
             (unsigned long) tv.tv_usec, (unsigned) getpid(), rnd[0], rnd[1], rnd[2]);
    buf_add(&tmp, dir, strlen(dir));
    buf_add(&tmp, "/.", 2);
    buf_add(&tmp, name, strlen(name) + 1);
    buf_add(&final, dir, strlen(dir));
    buf_add(&final, "/", 1);
    buf_add(&final, name, strlen(name) + 1);
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        fail_write(dir, errno);
    while (off < data->len) {
        ssize_t n = write(fd, data->data + off, data->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto failed;
        }
        off += (size_t) n;
    }
    if (fchmod(fd, 0644) < 0 || fsync(fd) < 0 || rename(tmp.data, final.data) < 0)
        goto failed;
    /* the rename made durable: fsync the directory, or syncfs when it cannot be read */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno != EACCES || syncfs(fd) < 0)
            fail_write(dir, errno);
    } else {
        if (fsync(dfd) < 0)
            fail_write(dir, errno);
        close(dfd);
    }
    close(fd);
    free(tmp.data);
    free(final.data);
    return;
  failed:
    err = errno;
    unlink(tmp.data);
    close(fd);
    fail_write(dir, err);
}

/* Tell pickup there is mail; it finds the file at its next scan if this fails. */
static void wake_pickup(const char *queue, const char *service)
{
    struct sockaddr_un sun;
    struct stat st;
    struct timeval tmo = {5, 0};
    int fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if ((size_t) snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/public/%s", queue,
                          service) >= sizeof(sun.sun_path))
        return;
    if (stat(sun.sun_path, &st) < 0)
        return;
    if (S_ISFIFO(st.st_mode)) {
        fd = open(sun.sun_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            (void) !write(fd, "W", 1);
            close(fd);
        }
        return;
    }
    if (!S_ISSOCK(st.st_mode))
        return;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
    if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) == 0) {
        (void) !write(fd, "W", 1);
    } else if (errno == EPROTOTYPE) {
        close(fd);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return;
        (void) !sendto(fd, "W", 1, 0, (struct sockaddr *) &sun, sizeof(sun));
    }
    close(fd);
}

#endif
