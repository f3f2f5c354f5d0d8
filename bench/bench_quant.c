/* Matrix-vector throughput of mope_vec_dot per weight type and ISA, against
 * the plain memory read bandwidth measured in the same process.
 *
 *   bench_quant [-t threads] [-mb megabytes] [-r repeats] [-b rows]
 *
 * -b B adds a table for a batch of B activation rows through the same
 * matrix (best ISA): the multi-row kernel (mope_vec_dot_rows) against B
 * single-row dots per weight row, both as a multiple of one row's time.
 *
 * (-mb 1 keeps the matrix in L2: then it measures kernel compute speed.)
 *
 * The weight matrix (default 256 MB, rows of 4096) is far larger than the
 * caches, so each pass streams it from DRAM as a decode step does.  GB/s
 * counts weight bytes only; "% of read" divides by the best plain read
 * (glibc memchr over a buffer of the same size, which is a vectorised pure
 * read).  Best of the repeats is reported; the machine may be shared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mope/quant.h"

#define K 4096

typedef struct {
    int type;
    const uint8_t *w;
    const void *x;
    size_t row_bytes;
    int64_t rows;
    float *out;
    mope_isa isa;
    int batch;          /* activation rows of the batched jobs */
    size_t x_stride;
    const uint8_t *buf; /* plain read */
    size_t buf_bytes;
    size_t hits;
} job;

static void matvec_job(void *ctx, int ith, int nth) {
    job *j = ctx;
    int64_t lo, hi;
    mope_split(j->rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        mope_vec_dot_isa(j->isa, j->type, K, &j->out[r], j->w + (size_t)r * j->row_bytes, j->x);
}

static void multi_job(void *ctx, int ith, int nth) {
    job *j = ctx;
    int64_t lo, hi;
    mope_split(j->rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        mope_vec_dot_rows_isa(j->isa, j->type, K, j->batch, &j->out[r], j->rows, j->w + (size_t)r * j->row_bytes,
                              j->x, j->x_stride);
}

static void loop_job(void *ctx, int ith, int nth) {
    job *j = ctx;
    int64_t lo, hi;
    mope_split(j->rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        for (int b = 0; b < j->batch; b++)
            mope_vec_dot_isa(j->isa, j->type, K, &j->out[r + b * j->rows], j->w + (size_t)r * j->row_bytes,
                             (const char *)j->x + (size_t)b * j->x_stride);
}

static void read_job(void *ctx, int ith, int nth) {
    job *j = ctx;
    int64_t lo, hi;
    mope_split((int64_t)(j->buf_bytes >> 12), ith, nth, &lo, &hi);
    /* 0xA5 never occurs in the buffer, so memchr reads every byte */
    const void *p = memchr(j->buf + (lo << 12), 0xA5, (size_t)(hi - lo) << 12);
    if (p) __atomic_fetch_add(&j->hits, 1, __ATOMIC_RELAXED);
}

/* With one thread the caller runs the job, and its CPU time excludes the
 * time the OS gave to other processes: on a shared machine that is the
 * better estimate of what the kernel itself sustains. */
static int use_cpu_time;

static double now(void) {
    if (!use_cpu_time) return mope_time_s();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void dot_read_job(void *ctx, int ith, int nth) {
    job *j = ctx;
    int64_t lo, hi;
    mope_split((int64_t)(j->buf_bytes >> 12), ith, nth, &lo, &hi);
    const float *p = (const float *)(j->buf + (lo << 12));
    j->out[ith] = mope_dot_f32(p, p, (hi - lo) << 10);
}

static double best_time(mope_pool *pool, mope_pool_fn fn, job *j, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        mope_pool_run(pool, fn, j);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = 1, reps = 3, batch = 0;
    size_t mb = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-mb")) mb = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-b")) batch = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [-t threads] [-mb megabytes] [-r repeats] [-b rows]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || mb < 1 || batch < 0 || batch > 64) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    use_cpu_time = threads == 1;
    mope_error err = {0};
    mope_pool *pool = mope_pool_create(threads, &err);
    if (!pool) {
        fprintf(stderr, "pool: %s\n", err.msg);
        return 1;
    }
    size_t bytes = mb << 20;
    uint8_t *buf = mope_alloc(bytes, 1);
    float *src = mope_alloc(64 * K, sizeof(float)), *xf = mope_alloc(K, sizeof(float));
    int nb = batch > 1 ? batch : 1;
    float *out = mope_alloc((bytes / 100 + 64) * (size_t)nb, sizeof(float));
    void *xq = mope_alloc((size_t)K * 4 * (size_t)nb, 1);
    if (!buf || !src || !xf || !out || !xq) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    mope_rng rng;
    mope_rng_seed(&rng, 1);
    for (int i = 0; i < 64 * K; i++) src[i] = 0.02f * mope_rng_normal(&rng);
    for (int i = 0; i < K; i++) xf[i] = mope_rng_normal(&rng);
    /* 0x3f bytes: normal floats for the f32 read, and never 0xA5 */
    memset(buf, 0x3f, bytes);

    job j = {.buf = buf, .buf_bytes = bytes, .out = out};
    double tread = best_time(pool, read_job, &j, reps + 2);
    double tdot = best_time(pool, dot_read_job, &j, reps + 2);
    double read_gbs = bytes / (tread < tdot ? tread : tdot) / 1e9;
    printf("mope bench_quant: %zu MB matrix, rows of %d, %d thread(s), best of %d, %s time\n", mb, K, threads, reps,
           use_cpu_time ? "thread CPU" : "wall");
    printf("plain memory read: memchr %.2f GB/s, mope_dot_f32(a, a) %.2f GB/s; %% read uses the better\n\n",
           bytes / tread / 1e9, bytes / tdot / 1e9);
    printf("%-6s %-7s %9s %9s %10s\n", "type", "isa", "GB/s", "% read", "Gelem/s");

    const int types[] = {MOPE_TYPE_Q8_0, MOPE_TYPE_Q4_0, MOPE_TYPE_Q4_K, MOPE_TYPE_Q6_K, MOPE_TYPE_Q4_1,
                         MOPE_TYPE_Q5_0, MOPE_TYPE_Q5_K, MOPE_TYPE_F16,  MOPE_TYPE_BF16, MOPE_TYPE_F32};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        int type = types[t];
        size_t rb = mope_row_size(type, K);
        int64_t rows = (int64_t)(bytes / rb);
        /* 64 real quantised rows, repeated: realistic bytes without
         * quantising hundreds of MB */
        for (int r = 0; r < 64; r++) mope_quantize_row(type, src + (size_t)r * K, buf + (size_t)r * rb, K);
        for (int64_t r = 64; r < rows; r++) memcpy(buf + (size_t)r * rb, buf + (size_t)(r % 64) * rb, rb);
        mope_quantize_act(type, xf, xq, K);
        j.type = type, j.w = buf, j.x = xq, j.row_bytes = rb, j.rows = rows;
        for (int isa = 0; isa <= (int)mope_quant_best_isa(); isa++) {
            j.isa = (mope_isa)isa;
            double tm = best_time(pool, matvec_job, &j, isa == 0 ? 1 : reps);
            double gbs = (double)rows * rb / tm / 1e9;
            printf("%-6s %-7s %9.2f %8.1f%% %10.2f\n", mope_type_name(type), mope_isa_name((mope_isa)isa), gbs,
                   100 * gbs / read_gbs, (double)rows * K / tm / 1e9);
            fflush(stdout);
        }
    }
    if (batch > 1) {
        mope_isa isa = mope_quant_best_isa();
        printf("\nbatch of %d activation rows (%s): time as a multiple of one row's\n", batch, mope_isa_name(isa));
        printf("%-6s %12s %14s %10s\n", "type", "multi-row", "single-row x B", "ms/1 row");
        const int btypes[] = {MOPE_TYPE_Q8_0, MOPE_TYPE_Q4_0, MOPE_TYPE_Q4_K, MOPE_TYPE_Q6_K, MOPE_TYPE_F16,
                              MOPE_TYPE_F32};
        for (size_t t = 0; t < sizeof btypes / sizeof *btypes; t++) {
            int type = btypes[t];
            size_t rb = mope_row_size(type, K);
            int64_t rows = (int64_t)(bytes / rb);
            if (rows > (int64_t)(bytes / 100 + 64)) rows = (int64_t)(bytes / 100 + 64);
            for (int r = 0; r < 64; r++) mope_quantize_row(type, src + (size_t)r * K, buf + (size_t)r * rb, K);
            for (int64_t r = 64; r < rows; r++) memcpy(buf + (size_t)r * rb, buf + (size_t)(r % 64) * rb, rb);
            j.x_stride = mope_row_size(mope_type_get(type)->vec_dot_type, K);
            for (int b = 0; b < batch; b++) {
                for (int i = 0; i < K; i++) xf[i] = mope_rng_normal(&rng);
                mope_quantize_act(type, xf, (char *)xq + (size_t)b * j.x_stride, K);
            }
            j.type = type, j.w = buf, j.x = xq, j.row_bytes = rb, j.rows = rows, j.isa = isa;
            double t1 = best_time(pool, matvec_job, &j, reps);
            j.batch = batch;
            double tm = best_time(pool, multi_job, &j, reps), tl = best_time(pool, loop_job, &j, reps);
            printf("%-6s %11.2fx %13.2fx %10.3f\n", mope_type_name(type), tm / t1, tl / t1, t1 * 1e3);
            fflush(stdout);
        }
    }
    if (j.hits) printf("(memchr found a byte it should not have)\n");
    mope_free(buf), mope_free(src), mope_free(xf), mope_free(out), mope_free(xq);
    mope_pool_free(pool);
    return 0;
}
