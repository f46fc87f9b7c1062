/* node.h -- small C helpers for node storage (src/node.pxi), where Cython cannot
 * express them: making a Value without running its type's constructor, and asking
 * the GC about an object without a call through the interpreter's API layers.
 */
#ifndef CMICROGRAD_NODE_H
#define CMICROGRAD_NODE_H

#include <Python.h>
#include <string.h>
#include "value_alloc.h"

/* A new Value (a new reference): untracked by the GC, its record slot NULL, its node
   left unset -- the hot path of every op, whose caller sets every node field. */
static PyObject *cm_new_value_unset(PyTypeObject *type, Py_ssize_t record_offset) {
    PyObject *o = cm_value_alloc_raw(type);
    if (o == NULL) return NULL;
    *(PyObject **)((char *)o + record_offset) = NULL;
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

/* Node and record offsets of the Value type, set once by init_value_type (node.pxi). */
static Py_ssize_t cm_node_offset, cm_record_offset;

/* The Value type's tp_new: a Value with a zeroed node and no record (Value.__init__
   then sets it up; a Value made by __new__ alone is a leaf with data 0.0). */
static PyObject *cm_value_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args; (void)kwds;
    return cm_new_value(type, cm_node_offset, cm_record_offset);
}

/* The Value type's memory: the engine's chunks (value_alloc.h), its own deallocator. */
static void cm_install_allocator(PyTypeObject *t, destructor dealloc) {
    t->tp_alloc = cm_value_alloc;
    t->tp_free = cm_value_free;
    t->tp_dealloc = dealloc;
}

/* The Value type's own slots (node.pxi says why): a record slot that Python's generic
   attribute lookup reads as the instance dict, and the functions that keep it. Needs
   cm_node_offset and cm_record_offset set. */
static void cm_install_value_slots(PyTypeObject *t, void *setattro, void *clear) {
    t->tp_new = cm_value_new;
    t->tp_dictoffset = cm_record_offset;
    t->tp_setattro = (setattrofunc)setattro;
    t->tp_clear = (inquiry)clear;
}

#endif
