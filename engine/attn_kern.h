/* attn_kern.h - private: the kernels of engine/attn.c, one table per
 * kernel set (base/cpu.h): the sgemm path's softmax row kernels and the
 * transposed path's S^T, softmax and P V kernels (prompt chunks).
 *
 * engine/attn_kern.c is compiled twice (Makefile): for the avx2 set
 * (x86-64-v3: 8 lanes, exp with the exponent built in integers) and for
 * the avx512 set (x86-64-v4: 16 lanes, exp scaled with vscalefps); the
 * portable set's table is plain C in attn.c (expf, no transposed path).
 * The vector exp is a Cody-Waite reduction and a degree-6 polynomial,
 * relative error < 2.5e-7 over [-87, 0] (about that of expf). Results
 * differ between sets in the last bits of exp and in summation order;
 * within one set they are deterministic and independent of the thread
 * count (one task computes each column block).
 */
#ifndef KVT_ATTN_KERN_H
#define KVT_ATTN_KERN_H

/* Columns of the transposed layout come in blocks of ATTN_CB (one query
 * row each: query t, head j of its KV group at column t*grp + j). A
 * matrix X^T of R rows (hd or keys) over the columns is stored block by
 * block: block b at X + b*R*ATTN_CB, row i of it at + i*ATTN_CB. */
enum { ATTN_CB = 32 };

struct attn_kern {
    /* max of row[0..n) (n >= 1; -inf if all are -inf) */
    float (*row_max)(const float *row, int n);
    /* row[c] = exp(row[c] - m) for c < n (row[c] <= m; -inf gives 0);
     * @return the sum of the new row[c] */
    float (*exp_sum)(float *row, int n, float m);
    /* x[i] *= s for i < n */
    void (*scale)(float *x, int n, float s);

    /* The transposed (column-blocked) path for prompt chunks, over NCB
     * column blocks (ATTN_CB query rows each) and N_S keys:
     * S^T (n_s rows, blocked) = K Q^T, K: n_s rows of hd at stride LDK;
     * QT: (hd rows, blocked) rotated queries times 1/sqrt(hd). */
    void (*qk_t)(const float *k, int ldk, int n_s, const float *qt, int hd, int ncb, float *st);
    /* The online softmax per column of S^T (n_s rows, blocked; -inf =
     * masked): M and L (ncb*ATTN_CB) running max and sum, OT (hd rows,
     * blocked) the accumulator, rescaled; S^T becomes P^T. */
    void (*softmax_t)(float *st, int n_s, int ncb, float *m, float *l, float *ot, int hd);
    /* OT (hd rows, blocked) += V^T P^T, V: n_s rows of hd at stride LDV. */
    void (*pv_t)(const float *v, int ldv, int n_s, const float *pt, int hd, int ncb, float *ot);
};

extern const struct attn_kern attn_kern_avx2;
extern const struct attn_kern attn_kern_avx512;

#endif
