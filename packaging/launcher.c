/*
 * bin/pycni: the one executable behind every bin/<plugin> link.
 *
 * PyInstaller collects the runtime (pycni-lib/: libpython, extension modules, every
 * module as a plain .pyc); this program starts it. It does what PyInstaller's onedir
 * bootloader does for us, minus what costs time on every exec (Documentation/performance.md):
 *  - no second exec of itself to set LD_LIBRARY_PATH: libpython is found through this
 *    file's RPATH ($ORIGIN/pycni-lib) and each bundled shared object got a RUNPATH to
 *    pycni-lib at build time (pycni.spec), so nothing is set in the environment either;
 *  - no reading of an archive appended to the executable, and no bootstrap modules:
 *    the interpreter is configured here and imports from pycni-lib with its own path finder.
 *
 * The interpreter runs isolated (no PYTHON* variables, no user site), without site,
 * in UTF-8 mode (text never depends on the locale of the runtime that execs us), with
 * asserts stripped (-O) and without writing bytecode. sys.argv is argv
 * as given, so plugins/multicall.py dispatches on the link name; sys.executable is the
 * resolved path of this file and sys.frozen is True, as under PyInstaller.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUNTIME_DIR "pycni-lib"
#define MAIN_CODE "from plugins.multicall import main\nmain()\n"

/* The resolved path of this executable: /proc/self/exe, or argv[0] (through PATH). */
static int own_path(const char *argv0, char *out)
{
    ssize_t n = readlink("/proc/self/exe", out, PATH_MAX - 1);
    if (n > 0) {
        out[n] = '\0';
        return 0;
    }
    if (strchr(argv0, '/') != NULL)
        return realpath(argv0, out) != NULL ? 0 : -1;
    const char *path = getenv("PATH");
    char candidate[PATH_MAX];
    while (path != NULL && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end != NULL ? (size_t)(end - path) : strlen(path);
        if (snprintf(candidate, sizeof candidate, "%.*s/%s", (int)len, len ? path : ".", argv0) < PATH_MAX
                && access(candidate, X_OK) == 0 && realpath(candidate, out) != NULL)
            return 0;
        path = end != NULL ? end + 1 : NULL;
    }
    return -1;
}

static int check(PyStatus status, PyConfig *config)
{
    if (!PyStatus_Exception(status))
        return 0;
    if (config != NULL)
        PyConfig_Clear(config);
    Py_ExitStatusException(status); /* prints the message and exits */
    return 1;
}

static int add_search_path(PyConfig *config, const char *path)
{
    wchar_t *wide = Py_DecodeLocale(path, NULL);
    if (wide == NULL) {
        fprintf(stderr, "pycni: cannot decode path %s\n", path);
        return -1;
    }
    PyStatus status = PyWideStringList_Append(&config->module_search_paths, wide);
    PyMem_RawFree(wide);
    return check(status, config);
}

int main(int argc, char **argv)
{
    char exe[PATH_MAX], runtime[PATH_MAX + 32], dynload[PATH_MAX + 64];
    if (own_path(argc > 0 ? argv[0] : "pycni", exe) < 0) {
        fprintf(stderr, "pycni: cannot find my own executable\n");
        return 1;
    }
    char *slash = strrchr(exe, '/');
    snprintf(runtime, sizeof runtime, "%.*s/" RUNTIME_DIR, (int)(slash - exe), exe);
    snprintf(dynload, sizeof dynload, "%s/python%d.%d/lib-dynload", runtime, PY_MAJOR_VERSION, PY_MINOR_VERSION);

    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.utf8_mode = 1;
    check(Py_PreInitialize(&preconfig), NULL);

    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 0;
    config.write_bytecode = 0;
    config.optimization_level = 1;
    config.parse_argv = 0;
    /* As python does: SIGPIPE ignored (a write to a closed pipe is an error to report, not
     * death by signal: a plugin delegate or iptables may exit before reading its stdin),
     * SIGINT raises KeyboardInterrupt. The isolated defaults leave both untouched. */
    config.install_signal_handlers = 1;
#ifdef PYCNI_IMPORTTIME
    config.import_time = 1; /* diagnostics build only (PYCNI_IMPORTTIME=1) */
#endif
    check(PyConfig_SetBytesArgv(&config, argc, argv), &config);
    check(PyConfig_SetBytesString(&config, &config.executable, exe), &config);
    check(PyConfig_SetBytesString(&config, &config.home, runtime), &config);
    config.module_search_paths_set = 1;
    if (add_search_path(&config, runtime) < 0 || add_search_path(&config, dynload) < 0)
        return 1;
    check(Py_InitializeFromConfig(&config), &config);
    PyConfig_Clear(&config);

    if (PySys_SetObject("frozen", Py_True) < 0) {
        PyErr_Print();
        return 1;
    }
    /* SystemExit ends the process inside PyRun_SimpleString with its code; any other
     * uncaught exception is printed and becomes status 1 (plugins report errors as
     * CNI JSON and end with os._exit, so neither is their normal way out). */
    int failed = PyRun_SimpleString(MAIN_CODE) != 0;
    if (Py_FinalizeEx() < 0)
        return 120;
    return failed ? 1 : 0;
}
