/*
 * mainvalues.h: the global parameters' values judged as Postfix 3.7's postdrop and
 * sendmail judge them at start, for the compiled postdrop (postdrop.c) and sendmail
 * front end (sendmail.c). The C twin of fastpost.mail.mainvalues (same tables in the
 * same order: tests/submission/test_mainvalues.py compares them; same rules, same
 * messages), working on what maildrop_write.h's reader saw (g_seen: every name main.cf
 * sets, its last value and line). Include after maildrop_write.h with FP_CONFIG_FATAL or
 * FP_CONFIG_WARN defined.
 *
 * judge_globals(path, &msg) returns
 *    0  every value is good;
 *    1  a value Postfix refuses: msg holds "PROG: warning: ..." lines (a host name's
 *       valid_hostname text) and the "PROG: fatal: ..." line, for the caller to print;
 *   -1  undecided: a judged value needs $name expansion this code does not do (a
 *       reference to a name it cannot tell is non-empty, a conditional form, a
 *       number, a host, user or group name with $): the Python command decides.
 * Order (Postfix's between the groups): compatibility_level, syslog_facility,
 * inet_protocols; myhostname/mydomain (the machine's own name first when main.cf does
 * not set myhostname); the table (strings, numbers, booleans, times);
 * mail_owner/setgid_group/default_privs; mynetworks_style; inet_interfaces (each
 * word resolved with getaddrinfo in inet_protocols' families, then each address looked
 * for among getifaddrs'); the VERP delimiters; last maillog_file against
 * maillog_file_prefixes (Postfix's maillog client, which postdrop and sendmail use).
 * For a string that must not be empty, $name and ${name} references are followed in
 * main.cf (8 levels) and a name of the string table unset in main.cf counts as
 * non-empty (its default is); so `myorigin = $mydomain` is judged here.
 *
 * Failures: none of its own (out of memory: maildrop_write.h's out_of_memory()).
 */
#ifndef FP_MAINVALUES_H
#define FP_MAINVALUES_H

#include <arpa/inet.h>
#include <grp.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pwd.h>
#include <strings.h>
#include <unistd.h>

#if !defined(FP_CONFIG_FATAL) && !defined(FP_CONFIG_WARN)
#error "mainvalues.h needs maildrop_write.h's g_seen (FP_CONFIG_FATAL or FP_CONFIG_WARN)"
#endif

enum { MV_STR, MV_INT, MV_LONG, MV_BOOL, MV_TIME };
#define MV_NONE LLONG_MIN

struct mv_param {
    const char *name;
    int kind;
    long long min, max;         /* MV_STR: lengths (max 0: none); else MV_NONE: none */
};

/* BEGIN TABLE (fastpost.mail.mainvalues: STRING_LENGTHS, INTEGERS, BOOLEANS, TIMES;
 * each in the order Postfix 3.7 judges them) */
static const struct mv_param mv_params[] = {
    {"mail_version", MV_STR, 1, 0},
    {"maillog_file_prefixes", MV_STR, 1, 0},
    {"maillog_file_compressor", MV_STR, 1, 0},
    {"maillog_file_rotate_suffix", MV_STR, 1, 0},
    {"postlog_service_name", MV_STR, 1, 0},
    {"mail_name", MV_STR, 1, 0},
    {"syslog_name", MV_STR, 1, 0},
    {"mail_owner", MV_STR, 1, 0},
    {"setgid_group", MV_STR, 1, 0},
    {"myorigin", MV_STR, 1, 0},
    {"daemon_directory", MV_STR, 1, 0},
    {"data_directory", MV_STR, 1, 0},
    {"command_directory", MV_STR, 1, 0},
    {"meta_directory", MV_STR, 1, 0},
    {"queue_directory", MV_STR, 1, 0},
    {"shlib_directory", MV_STR, 1, 0},
    {"process_id_directory", MV_STR, 1, 0},
    {"double_bounce_sender", MV_STR, 1, 0},
    {"default_privs", MV_STR, 1, 0},
    {"mail_release_date", MV_STR, 1, 0},
    {"default_database_type", MV_STR, 1, 0},
    {"hash_queue_names", MV_STR, 1, 0},
    {"mynetworks_style", MV_STR, 1, 0},
    {"default_verp_delimiters", MV_STR, 2, 2},
    {"verp_delimiter_filter", MV_STR, 1, 0},
    {"bounce_service_name", MV_STR, 1, 0},
    {"cleanup_service_name", MV_STR, 1, 0},
    {"defer_service_name", MV_STR, 1, 0},
    {"pickup_service_name", MV_STR, 1, 0},
    {"queue_service_name", MV_STR, 1, 0},
    {"rewrite_service_name", MV_STR, 1, 0},
    {"showq_service_name", MV_STR, 1, 0},
    {"error_service_name", MV_STR, 1, 0},
    {"flush_service_name", MV_STR, 1, 0},
    {"address_verify_service_name", MV_STR, 1, 0},
    {"trace_service_name", MV_STR, 1, 0},
    {"proxymap_service_name", MV_STR, 1, 0},
    {"proxywrite_service_name", MV_STR, 1, 0},
    {"smtputf8_autodetect_classes", MV_STR, 1, 0},
    {"info_log_address_format", MV_STR, 1, 0},
    {"myhostname", MV_STR, 1, 0},
    {"mydomain", MV_STR, 1, 0},
    {"syslog_facility", MV_STR, 1, 0},
    {"default_process_limit", MV_INT, 1, MV_NONE},
    {"max_use", MV_INT, 1, MV_NONE},
    {"dont_remove", MV_INT, MV_NONE, MV_NONE},
    {"line_length_limit", MV_INT, 512, MV_NONE},
    {"hash_queue_depth", MV_INT, 1, MV_NONE},
    {"fork_attempts", MV_INT, 1, MV_NONE},
    {"deliver_lock_attempts", MV_INT, 1, MV_NONE},
    {"debug_peer_level", MV_INT, 1, MV_NONE},
    {"fault_injection_code", MV_INT, MV_NONE, MV_NONE},
    {"berkeley_db_create_buffer_size", MV_INT, 1, MV_NONE},
    {"berkeley_db_read_buffer_size", MV_INT, 1, MV_NONE},
    {"header_size_limit", MV_INT, 1, MV_NONE},
    {"header_address_token_limit", MV_INT, 1, MV_NONE},
    {"mime_nesting_limit", MV_INT, 1, MV_NONE},
    {"mime_boundary_length_limit", MV_INT, 1, MV_NONE},
    {"delay_logging_resolution_limit", MV_INT, MV_NONE, 6},
    {"tcp_windowsize", MV_INT, MV_NONE, MV_NONE},
    {"message_size_limit", MV_LONG, MV_NONE, MV_NONE},
    {"lmdb_map_size", MV_LONG, 1, MV_NONE},
    {"daemon_table_open_error_is_fatal", MV_BOOL, 0, 0},
    {"dns_ncache_ttl_fix_enable", MV_BOOL, 0, 0},
    {"smtputf8_enable", MV_BOOL, 0, 0},
    {"enable_idna2003_compatibility", MV_BOOL, 0, 0},
    {"respectful_logging", MV_BOOL, 0, 0},
    {"disable_dns_lookups", MV_BOOL, 0, 0},
    {"soft_bounce", MV_BOOL, 0, 0},
    {"owner_request_special", MV_BOOL, 0, 0},
    {"strict_8bitmime", MV_BOOL, 0, 0},
    {"strict_7bit_headers", MV_BOOL, 0, 0},
    {"strict_8bitmime_body", MV_BOOL, 0, 0},
    {"strict_mime_encoding_domain", MV_BOOL, 0, 0},
    {"disable_mime_input_processing", MV_BOOL, 0, 0},
    {"disable_mime_output_conversion", MV_BOOL, 0, 0},
    {"address_verify_negative_cache", MV_BOOL, 0, 0},
    {"backwards_bounce_logfile_compatibility", MV_BOOL, 0, 0},
    {"helpful_warnings", MV_BOOL, 0, 0},
    {"send_cyrus_sasl_authzid", MV_BOOL, 0, 0},
    {"multi_instance_enable", MV_BOOL, 0, 0},
    {"enable_long_queue_ids", MV_BOOL, 0, 0},
    {"strict_smtputf8", MV_BOOL, 0, 0},
    {"enable_original_recipient", MV_BOOL, 0, 0},
    {"application_event_drain_time", MV_TIME, 1, MV_NONE},
    {"max_idle", MV_TIME, 1, MV_NONE},
    {"ipc_timeout", MV_TIME, 1, MV_NONE},
    {"ipc_idle", MV_TIME, 1, MV_NONE},
    {"ipc_ttl", MV_TIME, 1, MV_NONE},
    {"trigger_timeout", MV_TIME, 1, MV_NONE},
    {"fork_delay", MV_TIME, 1, MV_NONE},
    {"deliver_lock_delay", MV_TIME, 1, MV_NONE},
    {"stale_lock_time", MV_TIME, 1, MV_NONE},
    {"daemon_timeout", MV_TIME, 1, MV_NONE},
    {"in_flow_delay", MV_TIME, 0, MV_NONE},
    {NULL, 0, 0, 0}
};
/* END TABLE */

static const struct seen *mv_seen(const char *name)
{
    size_t i;

    for (i = 0; i < g_seen_len; i++)
        if (g_seen[i].name[0] == name[0] && strcmp(g_seen[i].name, name) == 0)
            return &g_seen[i];
    return NULL;
}

static const struct mv_param *mv_param(const char *name)
{
    const struct mv_param *p;

    for (p = mv_params; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

static void mv_add(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* the value as Postfix prints it here: each byte not printable ASCII becomes '?' */
static void mv_printable(struct buf *b, const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];

        buf_add(b, (c >= 32 && c < 127) ? (const char *) &s[i] : "?", 1);
    }
}

/* "PROG: fatal: " and, for a value main.cf set, "PATH, line N: " */
static void mv_fatal_head(struct buf *msg, const char *path, const struct seen *e)
{
    char line[32];

    mv_add(msg, FP_PROG ": fatal: ");
    if (e != NULL) {
        mv_add(msg, path);
        snprintf(line, sizeof(line), ", line %d: ", e->line);
        mv_add(msg, line);
    }
}

static int mv_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        c == '_';
}

/* 1: the expansion of value is surely not empty; 0: surely empty; -1: cannot tell */
static int mv_nonempty(const char *value, int depth)
{
    const char *s = value;
    int result = 0;

    if (depth > 8)
        return -1;
    while (*s) {
        const char *name;
        size_t len;
        char close = 0, ref[128];
        const struct seen *e;
        int sub;

        if (*s != '$') {
            result = 1;
            s++;
            continue;
        }
        s++;
        if (*s == '{' || *s == '(') {
            close = *s == '{' ? '}' : ')';
            s++;
        }
        name = s;
        while (mv_is_name_char(*s))
            s++;
        len = (size_t) (s - name);
        if (len == 0 || len >= sizeof(ref) || (close && *s != close))
            return -1;          /* "$$", "${name?x}", "${name" ...: Python's */
        if (close)
            s++;
        memcpy(ref, name, len);
        ref[len] = '\0';
        if ((e = mv_seen(ref)) != NULL) {
            if ((sub = mv_nonempty(e->value, depth + 1)) < 0)
                return -1;
        } else if ((mv_param(ref)) != NULL && mv_param(ref)->kind == MV_STR) {
            sub = 1;            /* a default Postfix requires to be non-empty */
        } else {
            return -1;
        }
        result |= sub;
    }
    return result;
}

/* why name is not a valid host name (Postfix's words, in msg), or 0 when it is */
static int mv_hostname_problem(struct buf *msg, const char *name)
{
    size_t len = strlen(name), i, label = 0;
    int numeric = 1;
    char head[64];
    const char *what = NULL;

    if (len > 255) {
        snprintf(head, sizeof(head), "bad length %zu for ", len);
        mv_add(msg, FP_PROG ": warning: valid_hostname: ");
        mv_add(msg, head);
        mv_printable(msg, name, 100);
        mv_add(msg, "...\n");
        return 1;
    }
    for (i = 0; i < len && what == NULL; i++) {
        unsigned char c = (unsigned char) name[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_') {
            if (++label > 63)
                what = "hostname label too long: ";
            if (!(c >= '0' && c <= '9'))
                numeric = 0;
        } else if (c == '.') {
            if (label == 0 || i == len - 1)
                what = "misplaced delimiter: ";
            label = 0;
        } else if (c == '-') {
            numeric = 0;
            if (label == 0 || i == len - 1 || name[i + 1] == '.')
                what = "misplaced hyphen: ";
            label++;
        } else {
            snprintf(head, sizeof(head), "invalid character %u(decimal): ", c);
            what = head;
        }
    }
    if (what == NULL && numeric)
        what = "numeric hostname: ";
    if (what == NULL)
        return 0;
    mv_add(msg, FP_PROG ": warning: valid_hostname: ");
    mv_add(msg, what);
    mv_printable(msg, name, len);
    mv_add(msg, "\n");
    return 1;
}

/* a decimal number of the C type's width: [+-]digits, nothing else */
static int mv_number(const char *s, int bits, long long *out)
{
    const char *p = s;
    char *end;

    if (*p == '+' || *p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    *out = strtoll(s, &end, 10);
    if (errno || *end)
        return 0;
    if (bits == 32 && (*out < INT_MIN || *out > INT_MAX))
        return 0;
    return 1;
}

static int mv_judge_value(struct buf *msg, const char *path, const struct mv_param *p,
                          const struct seen *e)
{
    const char *v = e->value;
    char text[160];
    long long n;

    if (p->kind == MV_STR) {
        size_t len = strlen(v);

        if (len >= (size_t) p->min && (p->max == 0 || len <= (size_t) p->max))
            return 0;
        mv_fatal_head(msg, path, e);
        snprintf(text, sizeof(text), "bad string length %zu %c %lld: ", len,
                 len < (size_t) p->min ? '<' : '>', len < (size_t) p->min ? p->min : p->max);
        mv_add(msg, text);
        mv_add(msg, p->name);
        mv_add(msg, " = ");
        mv_add(msg, v);
    } else if (p->kind == MV_INT || p->kind == MV_LONG) {
        if (!mv_number(v, p->kind == MV_INT ? 32 : 64, &n)) {
            mv_fatal_head(msg, path, e);
            mv_add(msg, "bad numerical configuration: ");
            mv_add(msg, p->name);
            mv_add(msg, " = ");
            mv_add(msg, v);
        } else if ((p->min != MV_NONE && n < p->min) || (p->max != MV_NONE && n > p->max)) {
            mv_fatal_head(msg, path, e);
            snprintf(text, sizeof(text), " parameter value %lld %c %lld", n,
                     (p->min != MV_NONE && n < p->min) ? '<' : '>',
                     (p->min != MV_NONE && n < p->min) ? p->min : p->max);
            mv_add(msg, "invalid ");
            mv_add(msg, p->name);
            mv_add(msg, text);
        } else {
            return 0;
        }
    } else if (p->kind == MV_BOOL) {
        if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "no") == 0)
            return 0;
        mv_fatal_head(msg, path, e);
        mv_add(msg, "bad boolean configuration: ");
        mv_add(msg, p->name);
        mv_add(msg, " = ");
        mv_add(msg, v);
    } else {                    /* MV_TIME: [+]digits, then an optional unit letter */
        const char *s = v, *units = "smhdw";
        static const long long mult[] = {1, 60, 3600, 86400, 604800};
        char unit;
        int bad = 0;
        long long m = 1;

        if (*s == '+')
            s++;
        if (*s < '0' || *s > '9') {
            bad = 1;
        } else {
            char *end;

            errno = 0;
            n = strtoll(s, &end, 10);
            unit = *end ? *end : 's';   /* (what follows the unit letter: ignored) */
            if (errno || n > INT_MAX || strchr(units, unit) == NULL)
                bad = 1;
            else
                m = mult[strchr(units, unit) - units];
            if (!bad && m > 1 && n >= INT_MAX / m)
                bad = 1;
        }
        if (bad) {
            mv_fatal_head(msg, path, e);
            mv_add(msg, "parameter ");
            mv_add(msg, p->name);
            mv_add(msg, ": bad time value or unit: ");
            mv_add(msg, v);
        } else if (n * m < p->min) {
            mv_fatal_head(msg, path, e);
            snprintf(text, sizeof(text), ": %lld (min %lld)", n * m, p->min);
            mv_add(msg, "invalid ");
            mv_add(msg, p->name);
            mv_add(msg, text);
        } else {
            return 0;
        }
    }
    mv_add(msg, "\n");
    return 1;
}

/*
 * A user's or group's ids: from /etc/passwd or /etc/group read here (one read each,
 * no NSS set-up: that doubled the helper's instructions), else through NSS
 * (getpwnam/getgrnam: a name kept elsewhere, LDAP say). 1 found, 0 not.
 */
static int mv_files_id(const char *file, struct buf *cache, const char *name,
                       unsigned *id, unsigned *gid)
{
    size_t len = strlen(name), pos = 0;

    if (cache->data == NULL) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        char chunk[8192];
        ssize_t got;

        buf_add(cache, "", 1);  /* read or not, read once */
        cache->len = 0;
        if (fd >= 0) {
            while ((got = read(fd, chunk, sizeof(chunk))) > 0)
                buf_add(cache, chunk, (size_t) got);
            close(fd);
        }
    }
    while (pos < cache->len) {
        const char *line = cache->data + pos, *end = memchr(line, '\n', cache->len - pos);
        size_t line_len = end ? (size_t) (end - line) : cache->len - pos;
        char *after;

        pos += line_len + 1;
        /* NAME:PASSWORD:ID[:GID...] */
        if (line_len > len + 1 && memcmp(line, name, len) == 0 && line[len] == ':') {
            const char *f = memchr(line + len + 1, ':', line_len - len - 1);

            if (f == NULL || f[1] < '0' || f[1] > '9')
                return 0;
            *id = (unsigned) strtoul(f + 1, &after, 10);
            if (*after != ':')
                return 0;
            if (gid != NULL) {
                if (after[1] < '0' || after[1] > '9')
                    return 0;
                *gid = (unsigned) strtoul(after + 1, &after, 10);
            }
            return 1;
        }
    }
    return 0;
}

static struct buf mv_passwd, mv_group;

static int mv_user(const char *name, unsigned *uid, unsigned *gid)
{
    struct passwd *pw;

    if (mv_files_id("/etc/passwd", &mv_passwd, name, uid, gid))
        return 1;
    if ((pw = getpwnam(name)) == NULL)
        return 0;
    *uid = (unsigned) pw->pw_uid;
    *gid = (unsigned) pw->pw_gid;
    return 1;
}

static int mv_group_id(const char *name, unsigned *gid)
{
    struct group *gr;

    if (mv_files_id("/etc/group", &mv_group, name, gid, NULL))
        return 1;
    if ((gr = getgrnam(name)) == NULL)
        return 0;
    *gid = (unsigned) gr->gr_gid;
    return 1;
}

/* mail_owner, default_privs, setgid_group: exist, unprivileged, distinct */
/* A user parameter's value: known, not root. 1 if so, else 0 with Postfix's fatal
   line in msg. */
static int mv_account_user(struct buf *msg, const char *path, const char *param,
                           const char *name, unsigned *uid, unsigned *gid)
{
    size_t start = msg->len;

    mv_add(msg, FP_PROG ": fatal: file ");
    mv_add(msg, path);
    mv_add(msg, ": parameter ");
    mv_add(msg, param);
    if (!mv_user(name, uid, gid)) {
        mv_add(msg, ": unknown user name value: ");
        mv_add(msg, name);
        return 0;
    }
    if (*uid == 0) {
        mv_add(msg, ": user ");
        mv_add(msg, name);
        mv_add(msg, " has privileged user ID");
        return 0;
    }
    msg->len = start;  /* fine: nothing said */
    return 1;
}

static int mv_accounts(struct buf *msg, const char *path)
{
    const struct seen *e;
    const char *owner_name, *privs_name, *group_name;
    unsigned owner_uid, owner_gid, privs_uid, privs_gid, group_gid;
    char text[64];

    owner_name = (e = mv_seen("mail_owner")) ? e->value : "postfix";
    privs_name = (e = mv_seen("default_privs")) ? e->value : "nobody";
    group_name = (e = mv_seen("setgid_group")) ? e->value : "postdrop";
    if (strchr(owner_name, '$') || strchr(privs_name, '$') || strchr(group_name, '$'))
        return -1;
#define MV_FILE_FATAL() (mv_add(msg, FP_PROG ": fatal: file "), mv_add(msg, path), \
                         mv_add(msg, ": "))
    if (!mv_account_user(msg, path, "mail_owner", owner_name, &owner_uid, &owner_gid))
        goto out;
    if (!mv_group_id(group_name, &group_gid)) {
        MV_FILE_FATAL();
        mv_add(msg, "parameter setgid_group: unknown group name: ");
        mv_add(msg, group_name);
        goto out;
    }
    if (group_gid == 0) {
        MV_FILE_FATAL();
        mv_add(msg, "parameter setgid_group: group ");
        mv_add(msg, group_name);
        mv_add(msg, " has privileged group ID");
        goto out;
    }
    /* not judged in a single-user instance (mail_owner is the invoking user) */
    if (owner_gid == group_gid && owner_uid != getuid()) {
        MV_FILE_FATAL();
        mv_add(msg, "parameters mail_owner and setgid_group: user ");
        mv_add(msg, owner_name);
        mv_add(msg, " and group ");
        mv_add(msg, group_name);
        snprintf(text, sizeof(text), " have the same group ID: %u", group_gid);
        mv_add(msg, text);
        goto out;
    }
    if (!mv_account_user(msg, path, "default_privs", privs_name, &privs_uid, &privs_gid))
        goto out;
    if (privs_uid == owner_uid) {
        MV_FILE_FATAL();
        mv_add(msg, "parameters default_privs and mail_owner specify the same user ");
        mv_add(msg, privs_name);
        goto out;
    }
    if (privs_gid == group_gid) {
        MV_FILE_FATAL();
        mv_add(msg, "parameters default_privs and setgid_group: user ");
        mv_add(msg, privs_name);
        mv_add(msg, " and group ");
        mv_add(msg, group_name);
        snprintf(text, sizeof(text), " have the same group ID: %u", group_gid);
        mv_add(msg, text);
        goto out;
    }
    return 0;
  out:
    mv_add(msg, "\n");
    return 1;
#undef MV_FILE_FATAL
}

/* compatibility_level: [+]N[.N[.N]], the first below 2^63, the others below 2^31 */
static int mv_compat_ok(const char *v)
{
    const char *s = v;
    int part;

    if (*s == '+')
        s++;
    for (part = 0; part < 3; part++) {
        char *end;
        long long n;

        if (*s < '0' || *s > '9')
            return 0;
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno || (part > 0 && n > INT_MAX))
            return 0;
        s = end;
        if (*s == '\0')
            return 1;
        if (*s != '.')
            return 0;
        s++;
    }
    return 0;
}

static int mv_word_in(const char *word, size_t len, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == len && memcmp(*words, word, len) == 0)
            return 1;
    return 0;
}

/* the next word of a list (", \t\r\n" between words): 1 and *word, *len, or 0 */
static int mv_next_word(const char **s, const char **word, size_t *len)
{
    *s += strspn(*s, ", \t\r\n");
    if (**s == '\0')
        return 0;
    *word = *s;
    *len = strcspn(*s, ", \t\r\n");
    *s += *len;
    return 1;
}

static const char *const mv_facilities[] = {
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog",
    "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7", NULL};
static const char *const mv_inet_protocols[] = {"all", "ipv4", "ipv6", NULL};
static const char *const mv_mynetworks_styles[] = {"host", "subnet", "class", NULL};

/* compatibility_level, syslog_facility, inet_protocols (Postfix judges them first) */
static int mv_first(struct buf *msg, const char *path)
{
    const struct seen *e;
    const char *s, *word;
    size_t len;

    if ((e = mv_seen("compatibility_level")) != NULL) {
        if (strchr(e->value, '$'))
            return -1;
        if (!mv_compat_ok(e->value)) {
            mv_fatal_head(msg, path, e);
            mv_add(msg, "malformed compatibility level syntax: \"");
            mv_add(msg, e->value);
            mv_add(msg, "\"\n");
            return 1;
        }
    }
    if ((e = mv_seen("syslog_facility")) != NULL) {
        if (strchr(e->value, '$'))
            return -1;
        if (e->value[0] == '\0') {
            mv_fatal_head(msg, path, e);
            mv_add(msg, "bad string length 0 < 1: syslog_facility = \n");
            return 1;
        }
        if (!mv_word_in(e->value, strlen(e->value), mv_facilities)) {
            mv_add(msg, FP_PROG ": fatal: file ");
            mv_add(msg, path);
            mv_add(msg, ": parameter syslog_facility: unrecognized value: ");
            mv_add(msg, e->value);
            mv_add(msg, "\n");
            return 1;
        }
    }
    if ((e = mv_seen("inet_protocols")) != NULL) {
        if (strchr(e->value, '$'))
            return -1;
        for (s = e->value; mv_next_word(&s, &word, &len);) {
            if (!mv_word_in(word, len, mv_inet_protocols)) {
                mv_fatal_head(msg, path, e);
                mv_add(msg, "unknown inet_protocols value \"");
                buf_add(msg, word, len);
                mv_add(msg, "\" in \"");
                mv_add(msg, e->value);
                mv_add(msg, "\"\n");
                return 1;
            }
        }
    }
    return 0;
}

/* one address as family byte + 16 bytes, for the comparison with the interfaces' */
static void mv_add_address(struct buf *b, const struct sockaddr *sa)
{
    unsigned char entry[17] = {0};

    if (sa->sa_family == AF_INET) {
        entry[0] = 4;
        memcpy(entry + 1, &((const struct sockaddr_in *) sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        entry[0] = 6;
        memcpy(entry + 1, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
    } else {
        return;
    }
    buf_add(b, (const char *) entry, sizeof(entry));
}

/* inet_interfaces: unless "all" or "loopback-only" (or no protocol), every word must
 * resolve in inet_protocols' families, then every address must be an interface's */
static int mv_inet_interfaces(struct buf *msg, const char *path)
{
    const struct seen *e = mv_seen("inet_interfaces"), *pe = mv_seen("inet_protocols");
    const char *protocols = pe ? pe->value : "all", *s, *word;
    struct buf wanted = {0}, local = {0}, host = {0};
    struct addrinfo hints, *res, *ai;
    struct ifaddrs *ifs, *ifa;
    int v4 = 0, v6 = 0, r = 0;
    size_t len, i, j;

    if (e == NULL)
        return 0;
    if (strchr(e->value, '$') || strchr(protocols, '$'))
        return -1;
    if (strcmp(e->value, "all") == 0 || strcmp(e->value, "loopback-only") == 0)
        return 0;
    for (s = protocols; mv_next_word(&s, &word, &len);) {
        if (len == 3 && memcmp(word, "all", 3) == 0)
            v4 = v6 = 1;
        else if (len == 4 && memcmp(word, "ipv4", 4) == 0)
            v4 = 1;
        else if (len == 4 && memcmp(word, "ipv6", 4) == 0)
            v6 = 1;
    }
    if (!v4 && !v6)
        return 0;               /* nothing is resolved (as Postfix) */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = v4 && v6 ? AF_UNSPEC : v6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    for (s = e->value; r == 0 && mv_next_word(&s, &word, &len);) {
        const char *name = word;
        size_t name_len = len;

        if (len >= 2 && word[0] == '[' && word[len - 1] == ']') {
            name++;
            name_len -= 2;
        }
        host.len = 0;
        buf_add(&host, name, name_len);
        buf_add(&host, "", 1);
        res = NULL;
        if (name_len == 0 || getaddrinfo(host.data, NULL, &hints, &res) != 0 || res == NULL) {
            mv_fatal_head(msg, path, e);
            mv_add(msg, "config variable inet_interfaces: host not found: ");
            buf_add(msg, word, len);
            mv_add(msg, "\n");
            r = 1;
        } else {
            for (ai = res; ai; ai = ai->ai_next)
                mv_add_address(&wanted, ai->ai_addr);
            freeaddrinfo(res);
        }
    }
    free(host.data);
    if (r == 0 && wanted.len > 0) {
        if (getifaddrs(&ifs) != 0) {
            free(wanted.data);
            return -1;
        }
        for (ifa = ifs; ifa; ifa = ifa->ifa_next)
            if (ifa->ifa_addr != NULL)
                mv_add_address(&local, ifa->ifa_addr);
        freeifaddrs(ifs);
        for (i = 0; r == 0 && i < wanted.len; i += 17) {
            for (j = 0; j < local.len; j += 17)
                if (memcmp(wanted.data + i, local.data + j, 17) == 0)
                    break;
            if (j >= local.len) {
                char text[INET6_ADDRSTRLEN];

                inet_ntop(wanted.data[i] == 4 ? AF_INET : AF_INET6, wanted.data + i + 1,
                          text, sizeof(text));
                mv_fatal_head(msg, path, e);
                mv_add(msg, "parameter inet_interfaces: no local interface found for ");
                mv_add(msg, text);
                mv_add(msg, "\n");
                r = 1;
            }
        }
        free(local.data);
    }
    free(wanted.data);
    return r;
}

/* maillog_file must begin with one of maillog_file_prefixes (Postfix's maillog client) */
static int mv_maillog(struct buf *msg, const char *path)
{
    const struct seen *e = mv_seen("maillog_file"), *pe = mv_seen("maillog_file_prefixes");
    const char *prefixes = pe ? pe->value : "/var, /dev/stdout", *s, *word;
    size_t len;

    if (e == NULL || e->value[0] == '\0')
        return 0;
    if (strchr(e->value, '$') || strchr(prefixes, '$'))
        return -1;
    for (s = prefixes; mv_next_word(&s, &word, &len);)
        if (strncmp(e->value, word, len) == 0)
            return 0;
    mv_fatal_head(msg, path, e);
    mv_add(msg, "maillog_file value '");
    mv_add(msg, e->value);
    mv_add(msg, "' does not match any prefix in maillog_file_prefixes\n");
    return 1;
}

/* mynetworks_style, inet_interfaces, then the VERP delimiters against their filter */
static int mv_last(struct buf *msg, const char *path)
{
    const struct seen *e, *d, *f;
    const char *s, *word, *delimiters, *filter;
    size_t len, words = 0, first_len = 0;
    const char *first = NULL;
    int r;

    /* judged only where it makes mynetworks' default: not when main.cf sets mynetworks */
    if ((e = mv_seen("mynetworks_style")) != NULL && mv_seen("mynetworks") == NULL) {
        if (strchr(e->value, '$'))
            return -1;
        for (s = e->value; mv_next_word(&s, &word, &len); words++) {
            if (first == NULL) {
                first = word;
                first_len = len;
            }
        }
        if (words > 1) {
            mv_fatal_head(msg, path, e);
            mv_add(msg, "bad mynetworks_style value: ");
            mv_add(msg, e->value);
            mv_add(msg, "; specify exactly one value\n");
            return 1;
        }
        if (first != NULL && !mv_word_in(first, first_len, mv_mynetworks_styles)) {
            mv_fatal_head(msg, path, e);
            mv_add(msg, "unknown mynetworks mask style value \"");
            buf_add(msg, first, first_len);
            mv_add(msg, "\" in \"");
            mv_add(msg, e->value);
            mv_add(msg, "\"\n");
            return 1;
        }
    }
    if ((r = mv_inet_interfaces(msg, path)) != 0)
        return r;
    d = mv_seen("default_verp_delimiters");
    f = mv_seen("verp_delimiter_filter");
    if (d != NULL || f != NULL) {
        delimiters = d ? d->value : "+=";
        filter = f ? f->value : "-=+";
        if (strchr(delimiters, '$') || strchr(filter, '$'))
            return -1;
        for (len = 0; len < 2 && delimiters[len]; len++) {
            if (strchr(filter, delimiters[len]) == NULL) {
                mv_add(msg, FP_PROG ": fatal: file ");
                mv_add(msg, path);
                mv_add(msg, ": parameters default_verp_delimiters and verp_delimiter_filter: bad ");
                mv_add(msg, len == 0 ? "first" : "second");
                mv_add(msg, " VERP delimiter character\n");
                return 1;
            }
        }
    }
    return 0;
}

static int judge_globals(const char *path, struct buf *msg)
{
    const struct seen *host_e = mv_seen("myhostname"), *domain_e = mv_seen("mydomain");
    const struct mv_param *p;
    int r;

    /* 0. compatibility_level, syslog_facility, inet_protocols */
    if ((r = mv_first(msg, path)) != 0)
        return r;
    /* 1. myhostname and mydomain, each derived from the other when not set; when
     * main.cf does not set myhostname, the machine's own name must be a host name */
    {
        char machine[256];
        struct buf host = {0}, domain = {0};
        const char *names[2] = {"myhostname", "mydomain"};
        const struct seen *es[2] = {host_e, domain_e};
        struct buf *values[2] = {&host, &domain};
        int k;

        r = 0;

        if ((host_e && strchr(host_e->value, '$')) || (domain_e && strchr(domain_e->value, '$')))
            return -1;
        if (host_e != NULL) {
            mv_add(&host, host_e->value);
        } else {                /* this machine's name, made fully qualified */
            if (gethostname(machine, sizeof(machine) - 1) != 0)
                return -1;
            machine[sizeof(machine) - 1] = '\0';
            if (mv_hostname_problem(msg, machine)) {
                mv_add(msg, FP_PROG ": fatal: unable to use my own hostname\n");
                return 1;
            }
            mv_add(&host, machine);
            if (strchr(machine, '.') == NULL) {
                mv_add(&host, ".");
                mv_add(&host, domain_e ? domain_e->value : "localdomain");
            }
        }
        buf_add(&host, "", 1);
        if (domain_e != NULL) {
            mv_add(&domain, domain_e->value);
        } else {
            const char *dot = strchr(host.data, '.');

            mv_add(&domain, dot ? dot + 1 : "localdomain");
        }
        buf_add(&domain, "", 1);
        for (k = 0; k < 2 && r == 0; k++) {     /* both lengths, then each name */
            if (values[k]->data[0] == '\0') {
                mv_fatal_head(msg, path, es[k]);
                mv_add(msg, "bad string length 0 < 1: ");
                mv_add(msg, names[k]);
                mv_add(msg, " = \n");
                r = 1;
            }
        }
        for (k = 0; k < 2 && r == 0; k++) {
            if (mv_hostname_problem(msg, values[k]->data)) {
                mv_add(msg, FP_PROG ": fatal: file ");
                mv_add(msg, path);
                mv_add(msg, ": parameter ");
                mv_add(msg, names[k]);
                mv_add(msg, ": bad parameter value: ");
                mv_printable(msg, values[k]->data, strlen(values[k]->data));
                mv_add(msg, "\n");
                r = 1;
            }
        }
        free(host.data);
        free(domain.data);
        if (r)
            return r;
    }
    /* 2. the tables, in their order */
    for (p = mv_params; p->name; p++) {
        const struct seen *e;

        if (strcmp(p->name, "myhostname") == 0 || strcmp(p->name, "mydomain") == 0)
            continue;
        if ((e = mv_seen(p->name)) == NULL)
            continue;
        if (strchr(e->value, '$')) {
            if (p->kind == MV_STR && p->min == 1 && p->max == 0 &&
                mv_nonempty(e->value, 0) == 1)
                continue;
            return -1;
        }
        if (mv_judge_value(msg, path, p, e))
            return 1;
    }
    /* 3. the accounts, 4. mynetworks_style and the VERP delimiters */
    if ((r = mv_accounts(msg, path)) != 0)
        return r;
    if ((r = mv_last(msg, path)) != 0)
        return r;
    /* 5. maillog_file against maillog_file_prefixes */
    return mv_maillog(msg, path);
}

#endif
