/* setns(2) for Python before 3.12, without ctypes.
 *
 * Importing ctypes costs every exec about 2.5 ms (and PyInstaller's bootstrap
 * imports it whenever it is bundled); this module is a few microseconds. When
 * it is not built (no C compiler), cni.netns falls back to ctypes.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sched.h>

static PyObject *
pycni_setns(PyObject *self, PyObject *args)
{
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii:setns", &fd, &nstype))
        return NULL;
    if (setns(fd, nstype) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setns", pycni_setns, METH_VARARGS, "setns(fd, nstype): enter the namespace open at fd."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cni._setns", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__setns(void)
{
    return PyModule_Create(&module);
}
