"""The one frozen executable behind every bin/<plugin> link: dispatch on argv[0].

`pycni <plugin> ...` works too, for a copy that lost its name. A plugin module
may define `cli(args)` for extra command-line roles (such as `dhcp daemon`);
otherwise its `main` Plugin runs the CNI protocol.
"""
from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    # A plugin process lives for tens of milliseconds and ends with os._exit: the
    # cyclic garbage collector only costs it time (1.5 to 3 ms of collections
    # triggered by imports). Long-running roles (the dhcp daemon) turn it back on.
    gc.disable()
    from plugins import registry

    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if name not in registry.PLUGINS and args:
        name, args = args[0], args[1:]
    if name not in registry.PLUGINS:
        sys.stderr.write(f"usage: pycni PLUGIN (one of: {', '.join(sorted(registry.PLUGINS))})\n")
        sys.exit(2)
    if not args and name not in registry.TOOLS and os.environ.get("CNI_COMMAND") == "VERSION":
        # The registry knows each plugin's versions, so VERSION is answered before
        # the plugin and its library are imported: runtimes probe every plugin of
        # every network with it (podman does on each start).
        from cni import version

        sys.stdout.write(version.version_json(registry.supported_versions(name)))
        sys.stdout.flush()
        os._exit(0)  # nothing to tear down; see cni.skel.exit_now
    sys.argv = [name] + args
    module = registry.module(name)
    cli = getattr(module, "cli", None)
    if cli is not None:
        gc.enable()
        cli(args)
    else:
        module.main.main()


if __name__ == "__main__":
    main()
