/* value_alloc.h -- where Value objects live.
 *
 * A training step makes and frees tens of thousands of Values. With Python's allocator
 * every step faults freshly mapped pages in (empty arenas go back to the OS), and its
 * LIFO free lists scatter the next step's nodes across memory, so that sorting and
 * backprop miss the cache on every node: a step got ~3x slower over ten steps.
 *
 * Here Values live in 64 KiB chunks, aligned to their size, of fixed-size slots, each
 * slot a GC header followed by the object. A bitmap per chunk marks free slots and
 * allocation takes the lowest free slot of the first chunk that has one, so nodes made
 * one after the other sit one after the other, step after step. Up to
 * CM_MAX_EMPTY_CHUNKS empty chunks are kept for reuse; beyond that they are freed.
 *
 * Installed as the Value type's tp_alloc/tp_free (see _init_type in _engine.pyx).
 * Everything runs under the GIL; free-threaded CPython is not supported.
 */
#ifndef CMICROGRAD_VALUE_ALLOC_H
#define CMICROGRAD_VALUE_ALLOC_H

#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _MSC_VER
#include <intrin.h>
#endif
#ifdef _WIN32
#include <windows.h>
#else
#include <sys/mman.h>
#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif
#endif

#ifdef Py_GIL_DISABLED
#error "cmicrograd does not support free-threaded CPython (see README: Threads)"
#endif

#define CM_CHUNK_BYTES ((size_t)1 << 16)
#define CM_MAX_EMPTY_CHUNKS 256          /* 16 MiB of empty chunks kept for reuse */
#define CM_GC_HEAD (2 * sizeof(uintptr_t)) /* PyGC_Head before every GC object */

typedef struct cm_chunk {
    uint32_t index;     /* position in cm_chunks */
    uint32_t n_free;    /* free slots */
    uint32_t word_hint; /* no free slot in the bitmap words below this one */
    uint32_t unused;
    uint64_t bits[1];   /* cm_words words; bit set = slot free */
} cm_chunk;

static size_t cm_slot_size;   /* GC header + tp_basicsize, rounded up to 16 */
static uint64_t cm_slot_recip; /* (offset * cm_slot_recip) >> 32 == offset / cm_slot_size */
static uint32_t cm_slots;     /* slots per chunk */
static uint32_t cm_words;     /* bitmap words per chunk */
static size_t cm_first;       /* offset of slot 0 from the chunk start */
static cm_chunk **cm_chunks = NULL;
static uint32_t cm_n_chunks = 0, cm_cap_chunks = 0;
static uint32_t cm_hint = 0;  /* no chunk below this one has a free slot */
static uint32_t cm_n_empty = 0;

static inline unsigned cm_ctz(uint64_t x) {
#ifdef _MSC_VER
    unsigned long i;
    _BitScanForward64(&i, x);
    return (unsigned)i;
#else
    return (unsigned)__builtin_ctzll(x);
#endif
}

/* A chunk of CM_CHUNK_BYTES aligned to its size, straight from the OS: an aligned
   malloc costs an extra ~8 KiB of resident memory per 64 KiB chunk here. */
static void *cm_aligned_malloc(size_t size) {
#ifdef _WIN32
    /* VirtualAlloc hands out 64 KiB-aligned regions (the allocation granularity) */
    return VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
#else
    size_t span = 2 * size;
    char *p = (char *)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *aligned;
    if (p == (char *)MAP_FAILED) return NULL;
    aligned = (char *)(((uintptr_t)p + size - 1) & ~(uintptr_t)(size - 1));
    if (aligned > p) munmap(p, (size_t)(aligned - p));
    if (aligned + size < p + span) munmap(aligned + size, (size_t)(p + span - (aligned + size)));
#ifdef MADV_POPULATE_WRITE
    (void)madvise(aligned, size, MADV_POPULATE_WRITE);
#endif
    return aligned;
#endif
}

static void cm_aligned_free(void *p) {
#ifdef _WIN32
    VirtualFree(p, 0, MEM_RELEASE);
#else
    munmap(p, CM_CHUNK_BYTES);
#endif
}

/* Lay out chunks for objects of basicsize bytes. Returns -1 if they cannot fit. */
static int cm_alloc_init(Py_ssize_t basicsize) {
    size_t header;
    cm_slot_size = (CM_GC_HEAD + (size_t)basicsize + 15) & ~(size_t)15;
    cm_slots = (uint32_t)(CM_CHUNK_BYTES / cm_slot_size);
    for (;;) {
        cm_words = (cm_slots + 63) / 64;
        header = offsetof(cm_chunk, bits) + cm_words * sizeof(uint64_t);
        cm_first = (header + 15) & ~(size_t)15;
        if (cm_first + (size_t)cm_slots * cm_slot_size <= CM_CHUNK_BYTES || cm_slots == 0) break;
        cm_slots--;
    }
    /* a division by a runtime divisor costs more than the rest of a free: multiply by
       the reciprocal instead, checked exact for every offset a chunk can hold */
    cm_slot_recip = ((uint64_t)1 << 32) / cm_slot_size + 1;
    {
        uint64_t off;
        for (off = 0; off < CM_CHUNK_BYTES; off++)
            if (((off * cm_slot_recip) >> 32) != off / cm_slot_size) return -1;
    }
    return cm_slots ? 0 : -1;
}

static cm_chunk *cm_new_chunk(void) {
    uint32_t w;
    cm_chunk *c;
    if (cm_n_chunks == cm_cap_chunks) {
        uint32_t cap = cm_cap_chunks ? 2 * cm_cap_chunks : 64;
        cm_chunk **grown = (cm_chunk **)realloc(cm_chunks, cap * sizeof(cm_chunk *));
        if (grown == NULL) return NULL;
        cm_chunks = grown;
        cm_cap_chunks = cap;
    }
    c = (cm_chunk *)cm_aligned_malloc(CM_CHUNK_BYTES);
    if (c == NULL) return NULL;
    c->index = cm_n_chunks;
    c->n_free = cm_slots;
    c->word_hint = 0;
    for (w = 0; w < cm_words; w++) c->bits[w] = ~(uint64_t)0;
    if (cm_slots % 64) c->bits[cm_words - 1] = ((uint64_t)1 << (cm_slots % 64)) - 1;
    cm_chunks[cm_n_chunks++] = c;
    cm_n_empty++;
    return c;
}

static void cm_release_chunk(cm_chunk *c) {
    uint32_t i;
    for (i = c->index; i + 1 < cm_n_chunks; i++) {
        cm_chunks[i] = cm_chunks[i + 1];
        cm_chunks[i]->index = i;
    }
    cm_n_chunks--;
    cm_n_empty--;
    if (cm_hint > c->index) cm_hint--;
    cm_aligned_free(c);
}

/* A slot's memory: the GC header and the object, not initialised. NULL if out of memory. */
static inline char *cm_slot_alloc(void) {
    uint32_t i, w;
    uint64_t word;
    cm_chunk *c = NULL;
    for (i = cm_hint; i < cm_n_chunks; i++) {
        if (cm_chunks[i]->n_free) { c = cm_chunks[i]; break; }
    }
    if (c == NULL) {
        c = cm_new_chunk();
        if (c == NULL) return NULL;
        i = c->index;
    }
    cm_hint = i;
    w = c->word_hint;
    while (c->bits[w] == 0) w++;
    c->word_hint = w;
    word = c->bits[w];
    c->bits[w] = word & (word - 1);
    if (c->n_free == cm_slots) cm_n_empty--;
    c->n_free--;
    return (char *)c + cm_first + ((size_t)w * 64 + cm_ctz(word)) * cm_slot_size;
}

/* tp_alloc: a zeroed, untracked object with refcount 1 (nitems is always 0). */
static PyObject *cm_value_alloc(PyTypeObject *type, Py_ssize_t nitems) {
    char *mem = cm_slot_alloc();
    PyObject *o;
    (void)nitems;
    if (mem == NULL) return PyErr_NoMemory();
    memset(mem, 0, cm_slot_size);
    o = (PyObject *)(mem + CM_GC_HEAD);
    (void)PyObject_Init(o, type);
    return o;
}

/* The engine's own allocation: only the GC header is zeroed (untracked) and the object
   header set; the caller initialises every field. */
static inline PyObject *cm_value_alloc_raw(PyTypeObject *type) {
    char *mem = cm_slot_alloc();
    PyObject *o;
    if (mem == NULL) return PyErr_NoMemory();
    memset(mem, 0, CM_GC_HEAD);
    o = (PyObject *)(mem + CM_GC_HEAD);
#if PY_VERSION_HEX < 0x030D0000 && !defined(Py_TRACE_REFS) && !defined(Py_REF_DEBUG)
    /* what PyObject_Init does for a static type, inline (the hot path of every op);
       3.13+ also notifies reference tracers, so there we call it */
    Py_SET_TYPE(o, type);
    Py_SET_REFCNT(o, 1);
#else
    (void)PyObject_Init(o, type);
#endif
    return o;
}

/* Whether the GC tracks o (our memory, so the header is known: a tracked object has a
   non-zero next pointer), without a call into the interpreter. */
static inline int cm_is_tracked(PyObject *o) { return ((uintptr_t *)o)[-2] != 0; }

/* tp_free: give the slot back. The object must be untracked already. */
static void cm_value_free(void *op) {
    char *mem = (char *)op - CM_GC_HEAD;
    cm_chunk *c = (cm_chunk *)((uintptr_t)mem & ~(uintptr_t)(CM_CHUNK_BYTES - 1));
    size_t slot = (size_t)((((uint64_t)(mem - (char *)c) - cm_first) * cm_slot_recip) >> 32);
    uint32_t w = (uint32_t)(slot / 64);
    c->bits[w] |= (uint64_t)1 << (slot % 64);
    if (w < c->word_hint) c->word_hint = w;
    if (c->index < cm_hint) cm_hint = c->index;
    if (++c->n_free == cm_slots) {
        cm_n_empty++;
        if (cm_n_empty > CM_MAX_EMPTY_CHUNKS) cm_release_chunk(c);
    }
}

/* Free every empty chunk (at exit, or to measure memory); returns how many. */
static Py_ssize_t cm_trim(void) {
    Py_ssize_t freed = 0;
    uint32_t i = cm_n_chunks;
    while (i-- > 0) {
        if (cm_chunks[i]->n_free == cm_slots) {
            cm_release_chunk(cm_chunks[i]);
            freed++;
        }
    }
    if (cm_n_chunks == 0) {
        free(cm_chunks);
        cm_chunks = NULL;
        cm_cap_chunks = 0;
        cm_hint = 0;
    }
    return freed;
}

/* Bytes of chunk memory held (live and free slots alike). */
static Py_ssize_t cm_bytes_held(void) { return (Py_ssize_t)cm_n_chunks * (Py_ssize_t)CM_CHUNK_BYTES; }

#endif
