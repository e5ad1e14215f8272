/* journal.h - the append-only progress journal of long runs (ppl, batch,
 * longrope-search), and the durable-file helpers they share.
 *
 * File format (text, one record per line):
 *
 *   line 1     "kvtile-journal 1 " HASH " " KEY "\n"
 *   records    HASH " " PAYLOAD "\n"
 *
 * KEY is the run key: every input and option the results depend on (model
 * fingerprint, text hash, options) and the name of the cache the run
 * keeps, one line of printable text; a journal opened with another key is
 * another run's. HASH is 16 lower-case hex digits: XXH3-64 of KEY on the
 * first line; of PAYLOAD, seeded with the key's hash, on a record (so a
 * record copied from another run's journal does not verify). PAYLOAD is
 * one line (no '\n', no NUL).
 *
 * Reading: records are taken in order up to the first line that is cut
 * short (no '\n'), does not verify, or is malformed; the file is cut back
 * to the end of the last good record before anything is appended (a torn
 * tail from a crash or a full disk). Appending: one write of the whole
 * line at the end, then fsync; a failed append cuts its partial line off
 * again (best effort; the next open would). Creating the file fsyncs its
 * directory, so the file itself survives a crash.
 *
 * A journal has one writer: jnl_open takes an exclusive flock on the file
 * and fails with -EBUSY at once if another open journal (this or another
 * process) holds it.
 *
 * All I/O goes through io.h's syscall table (faults can be injected).
 * Errors: -errno, KVT_EOTHERRUN (the key differs), KVT_EFORMAT (not a
 * journal). Nothing here prints or exits.
 */
#ifndef KVT_JOURNAL_H
#define KVT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct jnl_file jnl_file; /* (not "jnl": math.h has jnl()) */

enum jnl_flags {
    JNL_RESUME = 1 << 0, /* keep the records of an existing journal of KEY
                            (else: start a new, empty journal) */
};

/* Open (create) the journal at PATH for the run KEY. */
int jnl_open(const char *path, const char *key, int flags, jnl_file **out);
/* Release the lock and close; the file stays. NULL is a no-op. */
void jnl_close(jnl_file *j);
/* Close and delete the file (the run is complete), then fsync the
 * directory. @return 0 or -errno. */
int jnl_remove(jnl_file *j);

/* Records read at open (in file order), NUL-terminated payloads owned by
 * the journal; *len (may be NULL) gets the payload length. */
int64_t jnl_count(const jnl_file *j);
const char *jnl_record(const jnl_file *j, int64_t i, size_t *len);
/* Bytes of torn tail cut off at open (0: the file ended cleanly). */
uint64_t jnl_cut_bytes(const jnl_file *j);

/* Append one record (LEN bytes, no '\n' or NUL), durable on return. */
int jnl_append(jnl_file *j, const char *payload, size_t len);

/* Parse journal bytes BUF[0, LEN) for KEY, calling FN(CTX, payload,
 * payload_len) for each good record in order (payload not terminated;
 * FN returns 0 to go on, < 0 to stop with that error). *good_len gets the
 * end of the last good record (or of the first line). @return records
 * (>= 0), KVT_EOTHERRUN, KVT_EFORMAT, or FN's error. Never allocates. */
int64_t jnl_parse(const char *buf, size_t len, const char *key,
                  int (*fn)(void *ctx, const char *payload, size_t len),
                  void *ctx, size_t *good_len);

/* ---- durable files ------------------------------------------------------ */

/* fsync the directory that holds PATH (after a create, rename or unlink
 * in it). @return 0 or -errno. */
int jnl_fsync_dir(const char *path);

/* Replace PATH by the finished file TMP atomically: fsync TMP, rename it
 * over PATH, fsync the directory. @return 0 or -errno (TMP is left). */
int jnl_commit(const char *tmp, const char *path);

#endif
