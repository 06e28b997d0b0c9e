/* fuzz: what every libFuzzer harness shares — the entry point's prototype and CHECK. */
#ifndef GIFTD_FUZZ_H
#define GIFTD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/** libFuzzer calls this once per input (data: size bytes, borrowed); it returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A broken invariant is a bug like a crash: say which, then abort, so that libFuzzer keeps the
 * input as a crash reproducer. Active whatever NDEBUG says (unlike assert).
 */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
