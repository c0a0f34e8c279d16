"""What a newcomer pastes: the README's and the banner's commands work against a fresh `make dev`,
and a taken port says which one and how to move it."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.stackprocess import ROOT, StackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PROBLEM = "https://agentplane.dev/problems/"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StackProcess]:
    running = StackProcess(tmp_path / "data").start()
    try:
        yield running
    finally:
        running.stop()


def sh(script: str) -> subprocess.CompletedProcess[str]:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the README's examples need curl and jq")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120)


def readme_block(heading: str) -> str:
    section = (ROOT / "README.md").read_text().split(f"## {heading}\n", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_readme_calling_the_api_block_works_when_pasted(stack: StackProcess) -> None:
    block = readme_block("Calling the API").replace("API=http://127.0.0.1:3000", f"API=http://127.0.0.1:{stack.port}")
    done = sh(block)
    assert done.returncode == 0, done.stderr
    assert PROBLEM not in done.stdout, done.stdout
    assert '"Write the README"' in done.stdout


def test_the_banners_first_run_commands_work_when_pasted(stack: StackProcess) -> None:
    banner = stack.output.read_text()
    commands = banner.split("First run?", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
    register, login, _me = re.split(r"\n(?=  curl)", commands)
    registered = sh(register)
    assert registered.returncode == 0 and PROBLEM not in registered.stdout, registered.stdout
    logged_in = sh(login)
    assert '"token"' in logged_in.stdout, logged_in.stdout


def test_a_taken_port_names_the_port_and_its_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        blocked = StackProcess(tmp_path / "data", AGENTPLANE_HTTP_PORT=str(port))
        done = subprocess.run(
            [sys.executable, "-m", "devstack"],
            cwd=ROOT,
            env=blocked.environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"make dev: port {port} on 127.0.0.1 is in use" in done.stderr
    assert "AGENTPLANE_HTTP_PORT=<port> make dev" in done.stderr
