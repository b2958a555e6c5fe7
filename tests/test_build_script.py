"""build.sh's package install and .ci/run's kernel-link step, against fake apt/dpkg and a fake VM.

Nothing here installs or removes a package or boots a VM: `apt-get`, `dpkg-query` and vmrun.sh
are shell scripts that record how they were called and answer as a scenario says.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TEST_PACKAGES, describe_missing, missing_test_tools


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def listed_packages(text: str) -> list[str]:
    return [line.split("#", 1)[0].split()[0] for line in text.splitlines() if line.split("#", 1)[0].strip()]


# ---- build.sh: the packages of packaging/test-packages.txt ---------------------------------

FAKE_DPKG_QUERY = """\
# FAKE_DPKG: "name:status ..." (status as ${db:Status-Abbrev}); other names are unknown to dpkg
rc=0
for arg in "$@"; do
    case $arg in -*) continue ;; esac
    status=$(tr ' ' '\\n' <<<"$FAKE_DPKG" | awk -F: -v p="$arg" '$1 == p { print $2 }')
    if [ -n "$status" ]; then echo "$arg $status"; else echo "dpkg-query: no packages found matching $arg" >&2; rc=1; fi
done
exit $rc
"""

FAKE_APT_GET = """\
# Records each call; `install` fails until `update` ran when FAKE_APT_NO_LISTS is set.
echo "$*" >>"$FAKE_LOG"
case $1 in
    update) touch "$FAKE_LOG.lists" ;;
    install) [ -z "${FAKE_APT_NO_LISTS:-}" ] || [ -e "$FAKE_LOG.lists" ] || { echo "E: Unable to locate package" >&2; exit 100; } ;;
esac
"""


@pytest.fixture
def fake_apt(tmp_path):
    """A fakes directory for PATH (apt-get, dpkg-query, and id saying root) and the call log."""
    fakes = tmp_path / "fakes"
    write_script(fakes / "dpkg-query", FAKE_DPKG_QUERY)
    write_script(fakes / "apt-get", FAKE_APT_GET)
    write_script(fakes / "id", "echo 0\n")
    return fakes, tmp_path / "apt.log"


def run_deps(fake_apt, build_sh: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    fakes, log = fake_apt
    environ = dict(os.environ, PATH=f"{fakes}:{os.environ['PATH']}", FAKE_LOG=str(log), **env)
    p = subprocess.run([str(build_sh), "deps"], env=environ, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return p, calls


@pytest.fixture
def checkout(tmp_path):
    """build.sh in a directory of its own, with a package list the test writes."""
    d = tmp_path / "checkout"
    (d / "packaging").mkdir(parents=True)
    shutil.copy(ROOT / "build.sh", d / "build.sh")
    (d / "packaging" / "test-packages.txt").write_text(
        "# comment line\n\nalpha  cmd-a  # installed\nbeta   cmd-b\ngamma\n  delta  /usr/lib/x  # held, installed\n")
    return d


INSTALL = "install -y --no-install-recommends"


def test_deps_installs_only_the_missing_packages(fake_apt, checkout):
    # beta: known, not installed; gamma: unknown to dpkg (no package lists yet); delta held.
    p, calls = run_deps(fake_apt, checkout / "build.sh", FAKE_DPKG="alpha:ii beta:un delta:hi")
    assert p.returncode == 0, p.stderr
    assert calls == [f"{INSTALL} beta gamma"]  # no update: the install did not need one
    assert "apt-get install beta gamma" in p.stderr


def test_deps_does_nothing_when_all_are_installed(fake_apt, checkout):
    p, calls = run_deps(fake_apt, checkout / "build.sh", FAKE_DPKG="alpha:ii beta:ii gamma:ii delta:hi")
    assert p.returncode == 0, p.stderr
    assert calls == []
    assert "apt-get" not in p.stderr


def test_deps_updates_the_package_lists_only_when_the_install_needs_them(fake_apt, checkout):
    p, calls = run_deps(fake_apt, checkout / "build.sh", FAKE_DPKG="alpha:ii gamma:ii delta:ii",
                        FAKE_APT_NO_LISTS="1")
    assert p.returncode == 0, p.stderr
    assert calls == [f"{INSTALL} beta", "update", f"{INSTALL} beta"]


def test_deps_fails_when_the_install_fails(fake_apt, checkout):
    fakes, _ = fake_apt
    write_script(fakes / "apt-get", 'echo "$*" >>"$FAKE_LOG"; [ "$1" = update ] || { echo "E: broken" >&2; exit 100; }\n')
    p, calls = run_deps(fake_apt, checkout / "build.sh", FAKE_DPKG="")
    assert p.returncode != 0
    assert calls == [f"{INSTALL} alpha beta gamma delta", "update", f"{INSTALL} alpha beta gamma delta"]
    assert "E: broken" in p.stderr


def test_deps_reads_the_real_list(fake_apt):
    """The project's list, parsed by build.sh: every package is asked for when none is installed."""
    p, calls = run_deps(fake_apt, ROOT / "build.sh", FAKE_DPKG="")
    assert p.returncode == 0, p.stderr
    packages = listed_packages(TEST_PACKAGES.read_text())
    assert {"containernetworking-plugins", "nftables", "dnsmasq-base", "iptables", "podman"} <= set(packages)
    assert calls == [f"{INSTALL} {' '.join(packages)}"]


def test_deps_with_the_real_dpkg_query(fake_apt):
    """The real dpkg-query's answer: build.sh asks apt-get for exactly what dpkg lacks (on a machine
    `./build.sh test` prepared: nothing)."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    fakes, _ = fake_apt
    (fakes / "dpkg-query").unlink()
    lacking = []
    for package in listed_packages(TEST_PACKAGES.read_text()):
        state = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package],
                               capture_output=True, text=True).stdout
        if state[1:2] != "i":
            lacking.append(package)
    p, calls = run_deps(fake_apt, ROOT / "build.sh")
    assert p.returncode == 0, p.stderr
    assert calls == ([f"{INSTALL} {' '.join(lacking)}"] if lacking else [])


# ---- tests/conftest.py: a missing tool is named with its package --------------------------


def test_missing_tools_are_named_with_their_packages(tmp_path):
    missing = missing_test_tools(search_path=str(tmp_path))  # an empty PATH: every command is missing
    assert missing["nftables"] == ["nft"]
    assert missing["dnsmasq-base"] == ["dnsmasq"]
    assert "python3-venv" not in missing  # listed for the install, no command to check
    text = describe_missing({"nftables": ["nft"], "dnsmasq-base": ["dnsmasq"]})
    assert "nft (nftables)" in text and "dnsmasq (dnsmasq-base)" in text
    assert "apt-get install nftables dnsmasq-base" in text


def test_a_missing_tool_stops_build_sh_test_before_any_test(tmp_path):
    """Under PYCNI_REQUIRE_FROZEN (./build.sh test), one line naming the package, exit 4, no test run."""
    env = dict(os.environ, PYCNI_REQUIRE_FROZEN="1", PATH=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "test_jsontext.py")],
                       env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "nft (nftables)" in p.stderr and "apt-get install" in p.stderr
    assert "passed" not in p.stdout


# ---- .ci/run: the kernel-link step -----------------------------------------------------------

FAKE_VMRUN = """\
# FAKE_VM: one scenario per call, comma-separated (the last one repeats):
#   boots=P-F-S    pytest ran: P passed, F failed, S skipped (a junit report; exit 1 when F > 0)
#   nomarked       pytest collected nothing (an empty report, exit 5)
#   noboot         no report, the kernel console tail and exit 125 (vmrun.sh's "did not report")
echo "vmrun $*" >>"$FAKE_LOG"
echo "env PYCNI_REQUIRE_FROZEN=${PYCNI_REQUIRE_FROZEN:-}" >>"$FAKE_LOG"
calls=$(grep -c '^vmrun ' "$FAKE_LOG")
IFS=, read -ra scenarios <<<"$FAKE_VM"
scenario=${scenarios[calls - 1]:-${scenarios[-1]}}
report=
for arg in "$@"; do case $arg in --junitxml=*) report=${arg#--junitxml=} ;; esac; done
case $scenario in
    noboot)
        echo "vmrun: guest did not report an exit code; kernel console:" >&2
        echo "Kernel panic - not syncing: VFS: Unable to mount root fs" >&2
        exit 125 ;;
    nomarked)
        echo '<testsuites><testsuite tests="0"/></testsuites>' >"$report"
        exit 5 ;;
    boots=*)
        IFS=- read -r passed failed skipped <<<"${scenario#boots=}"
        {
            echo '<testsuites><testsuite>'
            for ((i = 0; i < passed; i++)); do echo "<testcase name=\\"p$i\\"/>"; done
            for ((i = 0; i < failed; i++)); do echo "<testcase name=\\"f$i\\"><failure/></testcase>"; done
            for ((i = 0; i < skipped; i++)); do echo "<testcase name=\\"s$i\\"><skipped/></testcase>"; done
            echo '</testsuite></testsuites>'
        } >"$report"
        [ "$failed" = 0 ] ;;
esac
"""


def run_kernel_step(tmp_path, scenarios: str, *, vmrun: bool = True, timeout: int = 900):
    """.ci/run kernel-links in a copy of the checkout's .ci/, with the fake VM; (result, vmrun calls)."""
    checkout = tmp_path / "clone"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", checkout / ".ci" / "run")
    log = tmp_path / "vm.log"
    fake = write_script(tmp_path / "shared" / "kernel" / "vmrun.sh", FAKE_VMRUN)
    if not vmrun:
        fake.unlink()
    env = dict(os.environ, FAKE_VM=scenarios, FAKE_LOG=str(log), VM_TIMEOUT=str(timeout))
    env.pop("VMRUN", None)  # the default: ../shared/kernel/vmrun.sh beside the clone
    p = subprocess.run(["bash", str(checkout / ".ci" / "run"), "kernel-links"], env=env,
                       capture_output=True, text=True, timeout=60)
    calls = [l for l in log.read_text().splitlines() if l.startswith("vmrun ")] if log.exists() else []
    if calls:
        assert f"-w {checkout} -- {checkout}/.venv/bin/python -m pytest -m needs_kernel_links" in calls[0]
        assert "env PYCNI_REQUIRE_FROZEN=1" in log.read_text()
    return p, calls


@pytest.mark.parametrize("scenarios, retried", [("boots=3-0-1", False), ("noboot,boots=3-0-1", True)])
def test_kernel_step_passes_and_reports_the_count(tmp_path, scenarios, retried):
    p, calls = run_kernel_step(tmp_path, scenarios)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "kernel-link tests in the VM: 3 run (3 passed, 0 failed, 0 errors), 1 skipped" in p.stdout
    assert len(calls) == (2 if retried else 1)
    assert ("trying once more" in p.stdout) == retried
    assert "kernel-links" in p.stdout.split("==== step times")[1]


@pytest.mark.parametrize("scenarios, calls_made, message", [
    ("noboot", 2, "the VM ran no test (exit 125"),
    ("nomarked", 1, "ran no test (pytest exit 5)"),
    ("boots=0-0-4", 1, "0 run (0 passed, 0 failed, 0 errors), 4 skipped"),
    ("boots=2-1-0", 1, "kernel-link tests failed (pytest exit 1)"),
])
def test_kernel_step_fails(tmp_path, scenarios, calls_made, message):
    p, calls = run_kernel_step(tmp_path, scenarios)
    assert p.returncode != 0, p.stdout
    assert len(calls) == calls_made
    assert message in p.stdout
    assert f"exit {p.returncode}" in p.stdout  # the closing summary
    if scenarios == "noboot":
        assert p.stderr.count("Kernel panic") == 2  # the console of each attempt is shown


def test_kernel_step_does_not_retry_a_vm_that_ran_out_of_time(tmp_path):
    p, calls = run_kernel_step(tmp_path, "noboot", timeout=5)  # it "ended" at the time limit
    assert p.returncode != 0
    assert len(calls) == 1
    assert "the VM ran out of time (VM_TIMEOUT=5 s)" in p.stdout


def test_kernel_step_fails_without_vmrun(tmp_path):
    p, calls = run_kernel_step(tmp_path, "boots=1-0-0", vmrun=False)
    assert p.returncode == 1 and calls == []
    assert "../shared/kernel/vmrun.sh" in p.stdout
