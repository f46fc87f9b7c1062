/* node.h -- small C helpers for node storage (src/node.pxi), where Cython cannot
 * express them: making a Value without running its type's constructor, and asking
 * the GC about an object without a call through the interpreter's API layers.
 */
#ifndef CMICROGRAD_NODE_H
#define CMICROGRAD_NODE_H

#include <Python.h>
#include <string.h>
#include "value_alloc.h"

/* Make the Value type allocate from the engine's chunks (value_alloc.h). */
static void cm_install_allocator(PyTypeObject *t) {
    t->tp_alloc = cm_value_alloc;
    t->tp_free = cm_value_free;
}

/* A new Value (a new reference): untracked by the GC, its record field None, its node
   left unset -- the hot path of every op, whose caller sets every node field. */
static PyObject *cm_new_value_unset(PyTypeObject *type, Py_ssize_t record_offset) {
    PyObject *o = cm_value_alloc_raw(type);
    if (o == NULL) return NULL;
    Py_INCREF(Py_None);
    *(PyObject **)((char *)o + record_offset) = Py_None;
    return o;
}

/* The same with its node zeroed. */
static PyObject *cm_new_value(PyTypeObject *type, Py_ssize_t node_offset,
                              Py_ssize_t record_offset) {
    PyObject *o = cm_new_value_unset(type, record_offset);
    if (o == NULL) return NULL;
    memset((char *)o + node_offset, 0, (size_t)(record_offset - node_offset));
    return o;
}

static int cm_gc_is_tracked(PyObject *o) { return PyObject_GC_IsTracked(o); }

#endif
