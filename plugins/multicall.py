"""The one frozen executable behind every bin/<plugin> link: dispatch on argv[0].

`pycni <plugin> ...` works too, for a copy that lost its name. A plugin module
may define `cli(args)` for extra command-line roles (such as `dhcp daemon`);
otherwise its `main` Plugin runs the CNI protocol.
"""
from __future__ import annotations

import os
import sys


def main() -> None:
    from plugins import registry

    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if name not in registry.PLUGINS and args:
        name, args = args[0], args[1:]
    if name not in registry.PLUGINS:
        sys.stderr.write(f"usage: pycni PLUGIN (one of: {', '.join(sorted(registry.PLUGINS))})\n")
        sys.exit(2)
    sys.argv = [name] + args
    module = registry.module(name)
    cli = getattr(module, "cli", None)
    if cli is not None:
        cli(args)
    else:
        module.main.main()


if __name__ == "__main__":
    main()
