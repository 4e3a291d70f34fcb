/* Plain single-walker 1/t Wang-Landau on the periodic L x L Ising model (reference for
 * benchmarks/wang_landau.py; built there with `cc -O2`, not part of the package).
 *
 * Rules identical to fs.samplers.wang_landau(schedule="1/t", num_walkers=1): random-site
 * single-spin trials accepted with min(1, g(E)/g(E')); after every trial ln g(E) += ln f at the
 * current level; ln f halves whenever every level was visited since the last change, until
 * ln f < 1/t, t = trials / K (K levels); from then on ln f = 1/t.  Every `check` sweeps the mean
 * |ln g - ln g_exact| over the K levels (ln g(E_0) fixed to ln 2) is computed; the run stops when
 * it is <= stop_error.  Prints "sweeps seconds error".
 *
 * usage: wl_ising L seed stop_error check max_sweeps exact_file [walkers]
 * walkers (default 1): W walkers sharing ln g, each making one trial per step in turn (a sweep is
 * N steps, W * N trials), the rule of fs.samplers.wang_landau(num_walkers=W), for like-with-like
 * comparisons; t then counts the trials of all walkers.
 * exact_file: K, then K lines "u ln_g" (u = unequal bonds, ascending energy); "-" runs max_sweeps
 * (even L, levels u = 0, 4, 6, ..., 2N - 4, 2N) and prints "u ln_g" (ln g(E_0) = ln 2): a long run
 * used as the reference where no exact g(E) is at hand.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t s[4];
static inline uint64_t rotl(const uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline uint64_t next(void) { /* xoshiro256+ */
    const uint64_t r = s[0] + s[3], t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
}
static inline double unif(void) { return (next() >> 11) * 0x1.0p-53; }

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) { fprintf(stderr, "usage: wl_ising L seed stop_error check max_sweeps exact_file [walkers]\n"); return 2; }
    int W = argc == 8 ? atoi(argv[7]) : 1;
    if (W < 1) { fprintf(stderr, "walkers must be >= 1\n"); return 2; }
    int L = atoi(argv[1]), N = L * L, check = atoi(argv[4]);
    uint64_t seed = strtoull(argv[2], 0, 10);
    double stop = atof(argv[3]);
    long max_sweeps = atol(argv[5]);
    int reference = argv[6][0] == '-' && argv[6][1] == 0;
    int K; int *u_of; double *ex;
    if (reference) {
        K = N - 1; u_of = malloc(K * sizeof(int)); ex = calloc(K, sizeof(double));
        u_of[0] = 0; for (int k = 1; k < K - 1; k++) u_of[k] = 2 + 2 * k; u_of[K - 1] = 2 * N;
        stop = -1.0;
    } else {
        FILE *f = fopen(argv[6], "r");
        if (!f || fscanf(f, "%d", &K) != 1) { fprintf(stderr, "bad exact file\n"); return 2; }
        u_of = malloc(K * sizeof(int)); ex = malloc(K * sizeof(double));
        for (int k = 0; k < K; k++) if (fscanf(f, "%d %lf", &u_of[k], &ex[k]) != 2) return 2;
        fclose(f);
    }
    int nu = 2 * N + 1;
    double *lng = calloc(nu, sizeof(double));
    long *hist = calloc(nu, sizeof(long));
    for (int i = 0; i < 4; i++) { seed += 0x9E3779B97F4A7C15ULL; uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL; z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL; s[i] = z ^ (z >> 31); }
    signed char *spw = malloc((size_t)N * W);
    int *uw = calloc(W, sizeof(int));
    int *nb = malloc(4 * N * sizeof(int));
    for (int i = 0; i < N; i++) {
        int r = i / L, c = i % L; for (int w = 0; w < W; w++) spw[(size_t)w * N + i] = 1;
        nb[4*i] = ((r + L - 1) % L) * L + c; nb[4*i+1] = ((r + 1) % L) * L + c;
        nb[4*i+2] = r * L + (c + L - 1) % L; nb[4*i+3] = r * L + (c + 1) % L;
    }
    double lnf = 1.0; int one_t = 0; double trials = 0;
    struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    double err = INFINITY; long sweep;
    for (sweep = 1; sweep <= max_sweeps; sweep++) {
        for (int n = 0; n < N; n++) for (int w = 0; w < W; w++) {
            signed char *sp = spw + (size_t)w * N; int u = uw[w];
            int i = (int)((next() >> 32) * (uint64_t)N >> 32);
            int eq = 0; for (int k = 0; k < 4; k++) eq += sp[nb[4*i+k]] == sp[i];
            int un = u + 2 * eq - 4;
            double d = lng[u] - lng[un];
            if (d >= 0 || unif() < exp(d)) { sp[i] = -sp[i]; u = un; }
            trials += 1;
            lng[u] += one_t ? K / trials : lnf;
            hist[u]++;
            uw[w] = u;
        }
        if (!one_t) {
            int all = 1; for (int k = 0; k < K; k++) if (!hist[u_of[k]]) { all = 0; break; }
            if (all) { lnf *= 0.5; for (int k = 0; k < nu; k++) hist[k] = 0; if (lnf < K / trials) one_t = 1; }
        }
        if (sweep % check == 0) {
            double e = 0; for (int k = 0; k < K; k++) e += fabs(lng[u_of[k]] - lng[u_of[0]] + log(2.0) - ex[k]);
            err = e / K;
            if (err <= stop) break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (reference) {
        for (int k = 0; k < K; k++) printf("%d %.12f\n", u_of[k], lng[u_of[k]] - lng[0] + log(2.0));
        return 0;
    }
    printf("%ld %.6f %.6f\n", sweep > max_sweeps ? max_sweeps : sweep, (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec), err);
    return 0;
}
