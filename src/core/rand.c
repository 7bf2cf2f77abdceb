#include <sys/random.h>
#include <unistd.h>

#include "d2o/rand.h"

/* xoshiro256** state; one per process. */
static uint64_t state[4] = {0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull, 0x94d049bb133111ebull,
                            0x2545f4914f6cdd1dull};

/* The process the state was seeded in (0: none): a forked child reseeds at its first draw, so
 * no two processes retry in lockstep even when nobody called d2o_rand_seed(). */
static pid_t seeded_pid;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void d2o_rand_seed_fixed(uint64_t seed)
{
    int i;

    for (i = 0; i < 4; i++) {
        state[i] = splitmix64(&seed);
    }
    seeded_pid = getpid();
}

void d2o_rand_seed(void)
{
    uint64_t seed = 0;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        seed = 0;
    }
    seed ^= (uint64_t)getpid() << 32;
    seed ^= (uint64_t)(uintptr_t)&seed;
    d2o_rand_seed_fixed(seed);
}

uint64_t d2o_rand_u64(void)
{
    uint64_t result, t;

    if (seeded_pid != getpid()) {
        d2o_rand_seed();
    }
    result = rotl(state[1] * 5, 7) * 9;
    t = state[1] << 17;

    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

uint64_t d2o_rand_below(uint64_t bound)
{
    uint64_t threshold, r;

    if (bound == 0) {
        return 0;
    }
    /* Rejection sampling removes the modulo bias. */
    threshold = -bound % bound;
    do {
        r = d2o_rand_u64();
    } while (r < threshold);
    return r % bound;
}

int64_t d2o_backoff_ms(int64_t base_ms, int64_t cap_ms, unsigned attempt)
{
    int64_t ceiling;

    if (base_ms <= 0 || cap_ms <= 0) {
        return 0;
    }
    if (attempt > 30) {
        attempt = 30;
    }
    ceiling = base_ms << attempt;
    if (ceiling > cap_ms || ceiling <= 0) {
        ceiling = cap_ms;
    }
    return (int64_t)d2o_rand_below((uint64_t)ceiling + 1);
}
