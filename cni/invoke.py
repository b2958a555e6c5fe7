"""Running another plugin (an IPAM delegate, a chained plugin) as the runtime would.

Shared by IPAM delegation and the runtime side (`cni.runtime`, cnitool).
"""
from __future__ import annotations

import io
import os
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

if TYPE_CHECKING:
    from typing import Mapping

from . import jsontext
from .errors import INTERNAL, INVALID_NETWORK_CONFIG, CNIError

# What PyInstaller's bootloader adds to the environment; a child must not inherit it:
# another frozen executable would take itself for our child process, and system tools
# would load our bundled libraries. bin/pycni is our own launcher (packaging/launcher.c),
# which sets nothing, but a build with PYCNI_LAUNCHER=pyinstaller, or a caller that is
# itself a PyInstaller program, still brings these.
_FROZEN_VARS = ("_MEIPASS2", "_PYI_ARCHIVE_FILE", "_PYI_APPLICATION_HOME_DIR", "_PYI_PARENT_PROCESS_LEVEL",
                "_PYI_SPLASH_IPC", "_PYI_LINUX_PROCESS_NAME")
_LIBRARY_PATH_VARS = ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONHOME", "PYTHONPATH")


def clean_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child process, without a frozen runtime's traces."""
    env = dict(environ)
    for key in _FROZEN_VARS:
        env.pop(key, None)
    if hasattr(sys, "_MEIPASS"):  # started by PyInstaller's bootloader, which set the library path
        for key in _LIBRARY_PATH_VARS:
            original = env.pop(key + "_ORIG", None)
            if original is not None:
                env[key] = original
            else:
                env.pop(key, None)
    return env


def find_executable(tool: str) -> str | None:
    """shutil.which without shutil (whose import loads fnmatch and re: about 20 ms of an exec)."""
    if "/" in tool:
        return tool if os.access(tool, os.X_OK) else None
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", tool)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def spawn(argv: list[str], stdin: bytes, env: Mapping[str, str]) -> tuple[int, bytes, bytes]:
    """Run `argv` (argv[0] an executable path) with `stdin`; (exit status, stdout, stderr).

    os.posix_spawn and a poll loop instead of subprocess: importing subprocess
    loads signal, threading, selectors and locale (and with it re), tens of
    milliseconds of a plugin exec that runs iptables-restore, nft or a foreign
    IPAM plugin. Python opens its descriptors close-on-exec, so the child gets
    the three pipes (and what our own parent passed down, as from a Go plugin);
    SIGPIPE and SIGXFSZ go back to their defaults, as subprocess does: Python
    ignores them, and an ignored signal stays ignored across exec.
    """
    import _signal  # the C module, loaded at start-up: signal.py would import enum
    import select

    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, dict(env), file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
            setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))
    except BaseException:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    poller.register(out_r, select.POLLIN)
    poller.register(err_r, select.POLLIN)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
    open_fds = len(chunks) + (1 if pending else 0)
    try:
        while open_fds:
            for fd, _event in poller.poll():
                if fd == in_w:
                    try:
                        pending = pending[os.write(in_w, pending[:65536]):]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        poller.unregister(in_w)
                        os.close(in_w)
                        open_fds -= 1
                    continue
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_fds -= 1
    finally:
        for fd in (out_r, err_r):
            os.close(fd)
        if pending:
            os.close(in_w)
        _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), b"".join(chunks[out_r]), b"".join(chunks[err_r])


def run_tool(cmd: list[str], stdin: str = "", what: str = "") -> str:
    """Run a system tool (iptables-restore, nft) with a clean environment; its stdout, or a CNI error."""
    what = what or cmd[0]
    path = find_executable(cmd[0])
    if path is None:
        raise CNIError(INTERNAL, f"{what}: failed to run {cmd[0]}: not found in PATH")
    try:
        status, out, err = spawn([path, *cmd[1:]], stdin.encode(), clean_environ(os.environ))
    except OSError as exc:
        raise CNIError(INTERNAL, f"{what}: failed to run {cmd[0]}: {exc.strerror}") from None
    if status != 0:
        raise CNIError(INTERNAL, f"{what}: {cmd[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def find_plugin(plugin_type: str, paths: list[str]) -> str:
    if not plugin_type:
        raise CNIError(INVALID_NETWORK_CONFIG, "plugin type is empty")
    if "/" in plugin_type or "\\" in plugin_type or plugin_type in (".", ".."):
        raise CNIError(INVALID_NETWORK_CONFIG, f'invalid plugin name "{plugin_type}": must not contain path separators')
    if not paths:
        raise CNIError(INTERNAL, "no paths provided", "CNI_PATH is empty")
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(INTERNAL, f'failed to find plugin "{plugin_type}" in path {list_text(paths)}')


def list_text(paths: list[str]) -> str:
    return "[" + " ".join(paths) + "]"


def _ours_in_process(path: str) -> str | None:
    """The plugin name when `path` is one of our own frozen entries, else None.

    Our bin/ entries are links to one shared executable; serving such a delegate
    in this process saves a whole interpreter start, with the same arguments,
    environment, output and exit status as an exec.
    """
    if not getattr(sys, "frozen", False):
        return None
    try:
        if os.path.realpath(path) != os.path.realpath(sys.executable):
            return None
    except OSError:
        return None
    from plugins import registry

    name = os.path.basename(path)
    if name not in registry.PLUGINS or not hasattr(registry.module(name), "main"):
        return None  # not a CNI plugin of ours (cnitool), or an unknown name: exec it
    return name


def run_plugin(path: str, environ: Mapping[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    """Exec (or serve in-process) one plugin call: (exit status, stdout, stderr)."""
    env = clean_environ(environ)
    name = _ours_in_process(path)
    if name is not None:
        from plugins import registry

        out, err = io.StringIO(), io.StringIO()
        status = registry.load(name).run(env, io.BytesIO(stdin), out, err)
        return status, out.getvalue().encode(), err.getvalue().encode()
    try:
        return spawn([path], stdin, env)
    except OSError as exc:
        raise CNIError(INTERNAL, f'failed to exec plugin "{path}": {exc.strerror}') from None


def exec_plugin(path: str, environ: Mapping[str, str], stdin: bytes) -> bytes:
    """Run a plugin; its stdout on success, its CNI error passed through unchanged on failure."""
    status, out, err = run_plugin(path, environ, stdin)
    if err:
        sys.stderr.write(err.decode(errors="replace"))
    if status == 0:
        return out
    try:
        data = jsontext.loads(out)
    except ValueError:
        data = None
    if isinstance(data, dict) and "code" in data:
        raise CNIError.from_dict(data)
    text = (out or err).decode(errors="replace").strip()
    raise CNIError(INTERNAL, f"netplugin failed: {text!r}" if text else f"plugin {path} exited with status {status}")
