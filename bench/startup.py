"""Startup time of whole executables, measured alternately (one exec of each per round).

    bench/startup.py [-n ROUNDS] LABEL=COMMAND [LABEL=COMMAND ...]

Each COMMAND is split like a shell word list and run with CNI_COMMAND=VERSION and
stdin from /dev/null; leading NAME=VALUE words change that command's environment as in a
shell (an empty value removes the variable: `CNI_COMMAND= bin/bridge` prints the about
line, which imports the plugin's modules but does no work); prints the median and 10th/90th percentile wall time of
each. Alternating the commands spreads machine noise evenly over all of them.
Nothing here asserts a time: it reports.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def split_env(words: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Leading NAME=VALUE words as environment changes (empty VALUE: unset), then the argv."""
    env = dict(env)
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        name, _, value = words[0].partition("=")
        if value:
            env[name] = value
        else:
            env.pop(name, None)
        words = words[1:]
    return words, env


def measure(commands: dict[str, list[str]], rounds: int, env: dict[str, str]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {label: [] for label in commands}
    prepared = {label: split_env(words, env) for label, words in commands.items()}
    for label, (argv, environ) in prepared.items():  # warm the page cache once, untimed
        subprocess.run(argv, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    for _ in range(rounds):
        for label, (argv, environ) in prepared.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            samples[label].append(time.perf_counter() - start)
            if proc.returncode != 0:
                sys.exit(f"{label}: {shlex.join(argv)} exited with {proc.returncode}")
    return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--rounds", type=int, default=50)
    parser.add_argument("commands", nargs="+", metavar="LABEL=COMMAND")
    opts = parser.parse_args()
    commands = {}
    for item in opts.commands:
        label, _, command = item.partition("=")
        commands[label] = shlex.split(command)
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": "VERSION"}
    for key in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE"):
        if key in os.environ:
            env[key] = os.environ[key]
    samples = measure(commands, opts.rounds, env)
    width = max(len(label) for label in commands)
    print(f"{'':{width}}  median    p10    p90  (ms, {opts.rounds} rounds, alternating)")
    for label, values in samples.items():
        print(f"{label:{width}}  {statistics.median(values) * 1e3:6.1f} {percentile(values, .1) * 1e3:6.1f} "
              f"{percentile(values, .9) * 1e3:6.1f}")


if __name__ == "__main__":
    main()
