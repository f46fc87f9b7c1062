/* The Value allocator as AddressSanitizer should see it, for tools/sanitize.sh.
 *
 * sanitize.sh force-includes this file into the engine's build (gcc -include, through
 * CMICROGRAD_EXTRA_CFLAGS), ahead of src/_engine.c; the engine's sources are unchanged.
 * The engine keeps Values in its own 64 KiB chunks (src/value_alloc.h), where ASan
 * cannot see a dead Value, so this file replaces or wraps that allocator:
 *   -DCM_ASAN_MALLOC (--mode malloc): every Value its own malloc() block, in place of
 *       src/value_alloc.h: ASan's quarantine catches any use after free, LeakSanitizer
 *       sees a Value that lost its last reference;
 *   otherwise (--mode chunks): the real chunk allocator, with each freed slot poisoned
 *       until reused.
 * It relies on the names src/value_alloc.h defines (cm_alloc_init, cm_value_alloc,
 * cm_value_alloc_raw, cm_is_tracked, cm_value_free, cm_trim, cm_bytes_held,
 * cm_slot_alloc, cm_slot_size, CM_GC_HEAD) and on its include guard,
 * CMICROGRAD_VALUE_ALLOC_H (in malloc mode defined here first, to keep the real one out). */
#ifndef CMICROGRAD_ASAN_VALUE_ALLOC_H
#define CMICROGRAD_ASAN_VALUE_ALLOC_H
#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sanitizer/asan_interface.h>

#ifdef CM_ASAN_MALLOC
#define CMICROGRAD_VALUE_ALLOC_H
#define CM_GC_HEAD (2 * sizeof(uintptr_t))
static size_t cm_slot_size;
static Py_ssize_t cm_live = 0;
static int cm_alloc_init(Py_ssize_t basicsize) {
    cm_slot_size = (CM_GC_HEAD + (size_t)basicsize + 15) & ~(size_t)15;
    return 0;
}
static inline PyObject *cm_value_alloc_raw(PyTypeObject *type) {
    char *mem = (char *)malloc(cm_slot_size);
    PyObject *o;
    if (mem == NULL) return PyErr_NoMemory();
    memset(mem, 0, CM_GC_HEAD);
    cm_live++;
    o = (PyObject *)(mem + CM_GC_HEAD);
    (void)PyObject_Init(o, type);
    return o;
}
static PyObject *cm_value_alloc(PyTypeObject *type, Py_ssize_t nitems) {
    char *mem = (char *)calloc(1, cm_slot_size);
    PyObject *o;
    (void)nitems;
    if (mem == NULL) return PyErr_NoMemory();
    cm_live++;
    o = (PyObject *)(mem + CM_GC_HEAD);
    (void)PyObject_Init(o, type);
    return o;
}
static inline int cm_is_tracked(PyObject *o) { return ((uintptr_t *)o)[-2] != 0; }
static void cm_value_free(void *op) { free((char *)op - CM_GC_HEAD); cm_live--; }
static Py_ssize_t cm_trim(void) { return 0; }
/* bytes of live Values: 0 exactly when no Value is alive, as with the chunks */
static Py_ssize_t cm_bytes_held(void) { return cm_live * (Py_ssize_t)cm_slot_size; }

#else
/* Chunks may come straight from mmap: unpoison a region before it is unmapped, or a
   later mapping at the same address would inherit the poison. */
#include <sys/mman.h>
static int cm_asan_munmap(void *p, size_t n) {
    ASAN_UNPOISON_MEMORY_REGION(p, n);
    return (munmap)(p, n);
}
#define munmap cm_asan_munmap
#include "value_alloc.h"
static PyObject *cm_asan_value_alloc(PyTypeObject *type, Py_ssize_t nitems) {
    char *mem = cm_slot_alloc();
    PyObject *o;
    (void)nitems;
    if (mem == NULL) return PyErr_NoMemory();
    ASAN_UNPOISON_MEMORY_REGION(mem, cm_slot_size);
    memset(mem, 0, cm_slot_size);
    o = (PyObject *)(mem + CM_GC_HEAD);
    (void)PyObject_Init(o, type);
    return o;
}
static inline PyObject *cm_asan_value_alloc_raw(PyTypeObject *type) {
    char *mem = cm_slot_alloc();
    PyObject *o;
    if (mem == NULL) return PyErr_NoMemory();
    ASAN_UNPOISON_MEMORY_REGION(mem, cm_slot_size);
    memset(mem, 0, CM_GC_HEAD);
    o = (PyObject *)(mem + CM_GC_HEAD);
    (void)PyObject_Init(o, type);
    return o;
}
static void cm_asan_value_free(void *op) {
    /* poison first: cm_value_free reads only the chunk's header, and may free the chunk */
    ASAN_POISON_MEMORY_REGION((char *)op - CM_GC_HEAD, cm_slot_size);
    cm_value_free(op);
}
#define cm_value_alloc cm_asan_value_alloc
#define cm_value_alloc_raw cm_asan_value_alloc_raw
#define cm_value_free cm_asan_value_free
#endif
#endif
