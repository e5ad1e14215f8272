/* mm_rows.h - private: the loops over the 256-element chunks of a weight
 * row, written once and compiled into each kernel set: the file that
 * includes it defines MM_ROWS_UNPACK (its unpacker table) and
 *   with MM_ROWS_F32: affine_store, dq_f16, dot_f32, dot_f16, dot_bf16,
 *     dot_groups (as in mm_portable.c), and gets dequant and dot_rows
 *     (struct mm_kernels);
 *   with MM_ROWS_X8: dot_groups_x8, and gets dot_rows_x8_chunks (the
 *     dot_rows_x8 of struct mm_kernels through unpacked chunks).
 * The calls inside are direct, so each set's compiler inlines its own. */
#ifndef MM_ROWS_UNPACK
#error "define MM_ROWS_UNPACK (and MM_ROWS_F32 / MM_ROWS_X8) first"
#endif

#ifdef MM_ROWS_F32
static void dequant(int type, const void *src, float *dst, int64_t n)
{
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case GGML_TYPE_F16: dq_f16(src, dst, n); return;
    case GGML_TYPE_BF16: numfmt_bf16_to_f32_row(src, (size_t)n, dst); return;
    default: break;
    }
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const mm_unpack_fn unpack = MM_ROWS_UNPACK[type];
    const int bias = mm_has_bias(type), per_chunk = MM_QK_K / blck;
    const int64_t n_blk = n / blck;
    const uint8_t *s = src;
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int64_t b = 0; b < n_blk; b += per_chunk) {
        const int nb = (int)KVT_MIN((int64_t)per_chunk, n_blk - b);
        unpack(s + b * bytes, nb, q, sc, bi);
        affine_store(q, sc, bi, bias, dst + b * blck, nb * blck / 16);
    }
}

/* acc[i] = dot(row, x + i*n) for the m rows of X: each chunk of the row
 * is unpacked once for all of them. */
static void dot_rows(int type, const uint8_t *row, const float *x, int64_t n, int m,
                     float *acc)
{
    switch (type) {
    case GGML_TYPE_F32:
        for (int i = 0; i < m; i++) acc[i] = dot_f32((const float *)row, x + i * n, n);
        return;
    case GGML_TYPE_F16:
        for (int i = 0; i < m; i++) acc[i] = dot_f16((const uint16_t *)row, x + i * n, n);
        return;
    case GGML_TYPE_BF16:
        for (int i = 0; i < m; i++) acc[i] = dot_bf16((const uint16_t *)row, x + i * n, n);
        return;
    default: break;
    }
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const mm_unpack_fn unpack = MM_ROWS_UNPACK[type];
    const int per_chunk = MM_QK_K / blck;
    const int64_t n_blk = n / blck;
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int i = 0; i < m; i++) acc[i] = 0;
    for (int64_t b = 0; b < n_blk; b += per_chunk) {
        const int nb = (int)KVT_MIN((int64_t)per_chunk, n_blk - b);
        unpack(row + b * bytes, nb, q, sc, bi);
        for (int i = 0; i < m; i++)
            acc[i] += dot_groups(q, sc, bi, x + i * n + b * blck, nb * blck / 16);
    }
}
#endif

#ifdef MM_ROWS_X8
/* The same against the m rows of X quantized in C (mm_x8_quant). */
static void dot_rows_x8_chunks(int type, const uint8_t *row, const mm_ctx *c, int64_t n,
                               int m, float *acc)
{
    const int64_t ng = n / 16;
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const mm_unpack_fn unpack = MM_ROWS_UNPACK[type];
    const int bias = mm_has_bias(type);
    const int per_chunk = MM_QK_K / blck;
    const int64_t n_blk = n / blck;
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int i = 0; i < m; i++) acc[i] = 0;
    for (int64_t b = 0; b < n_blk; b += per_chunk) {
        const int nb = (int)KVT_MIN((int64_t)per_chunk, n_blk - b);
        const int64_t k0 = b * blck;
        unpack(row + b * bytes, nb, q, sc, bi);
        for (int i = 0; i < m; i++)
            acc[i] += dot_groups_x8(q, sc, bi, bias, c->x8q + i * n + k0,
                                    c->x8d + i * ng + k0 / 16, c->x8s + i * ng + k0 / 16,
                                    nb * blck / 16);
    }
}
#endif
