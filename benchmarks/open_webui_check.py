"""Does Open WebUI work on famous? A scripted check, not a pytest test: Open WebUI lives in a
virtual environment of its own (it pins its own FastAPI, pydantic and transformers).

Run: python benchmarks/open_webui_check.py [--open-webui /work/venvs/openwebui/bin/open-webui]

It starts ``famous serve`` on the real SmolLM2 GGUF (``tests/provision.py``'s cached copy)
with an API key, then ``open-webui serve`` with both of its backends pointed at that
gateway (Ollama at the root, OpenAI at ``/v1``), no login, its data in a temporary folder
and every network lookup off; then, through Open WebUI's own HTTP API only, it signs in,
gives its Ollama connection the key (an admin setting: there is no environment variable
for it), checks that the model is listed by both backends, and streams a chat completion
through each. Everything it started is stopped at the end; it prints what it saw and exits 1 on a
failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import provision  # noqa: E402
from famous.runtimes.base import free_port  # noqa: E402

MODEL = "smollm2"
KEY = "sk-famous-open-webui-check"
QUESTION = "What is the capital of France? Answer in one sentence."
OFFLINE = {  # Open WebUI fetches embedding models, a tokenizer and version news by default
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OFFLINE_MODE": "True",
    "ENABLE_VERSION_UPDATE_CHECK": "False",
    "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False",
    "RAG_RERANKING_MODEL_AUTO_UPDATE": "False",
    "WHISPER_MODEL_AUTO_UPDATE": "False",
    "BYPASS_EMBEDDING_AND_RETRIEVAL": "True",
    "ENABLE_WEB_SEARCH": "False",
    "ENABLE_IMAGE_GENERATION": "False",
    "ENABLE_CODE_INTERPRETER": "False",
    "ENABLE_TITLE_GENERATION": "False",
    "ENABLE_FOLLOW_UP_GENERATION": "False",
    "ENABLE_TAGS_GENERATION": "False",
    "ENABLE_AUTOCOMPLETE_GENERATION": "False",
    "SCARF_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "true",
    "ANONYMIZED_TELEMETRY": "false",
}


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A process of its own session, its output in ``log``; SIGTERM (then SIGKILL) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited early:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer in {seconds:.0f} s:\n{log.read_text()[-4000:]}")


def gateway_command(port: int, gguf: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "famous", "serve", "--port", str(port)),
        *("--model", f"{MODEL}={gguf}", "--keep-alive", "-1", "--api-key", KEY),
    ]


def webui_env(folder: Path, gateway: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env | OFFLINE | {
        "DATA_DIR": str(folder / "open-webui"),
        "HOME": str(folder),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEBUI_AUTH": "False",
        "WEBUI_SECRET_KEY": "famous-open-webui-check",
        "ENABLE_OLLAMA_API": "True",
        "OLLAMA_BASE_URL": gateway,
        "ENABLE_OPENAI_API": "True",
        "OPENAI_API_BASE_URL": gateway + "/v1",
        "OPENAI_API_KEY": KEY,
        "NO_PROXY": "127.0.0.1,localhost",
    }  # fmt: skip


def streamed(http: httpx.Client, model_id: str) -> tuple[str, int]:
    """The text of a streamed chat completion through Open WebUI, and its chunk count."""
    body = {"model": model_id, "messages": [{"role": "user", "content": QUESTION}]}
    body |= {"stream": True, "params": {"temperature": 0, "max_tokens": 48}}
    text, chunks = "", 0
    with http.stream("POST", "/api/chat/completions", json=body, timeout=300) as answer:
        if answer.status_code != 200:
            raise SystemExit(f"chat through {model_id}: {answer.status_code} {answer.read()!r}")
        for line in answer.iter_lines():
            data = line.removeprefix("data: ").strip()
            if not data.startswith("{"):
                continue
            event = json.loads(data)
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                text += piece
                chunks += bool(piece)
    return text, chunks


def ollama_key(http: httpx.Client, gateway: str) -> None:
    """Give Open WebUI's Ollama connection the gateway's API key: it has no environment
    variable for one (OPENAI_API_KEY is the OpenAI connection's), only this admin setting."""
    before = http.get("/ollama/api/tags").json()["models"]
    print("  Ollama backend before it has the key:", [m["name"] for m in before])
    update = {"ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": [gateway]}
    update["OLLAMA_API_CONFIGS"] = {"0": {"enable": True, "key": KEY}}
    http.post("/ollama/config/update", json=update).raise_for_status()


def check(webui: str, gateway: str) -> list[str]:
    """What Open WebUI shows of famous, through its own API; the failures found."""
    failures = []
    token = httpx.post(
        webui + "/api/v1/auths/signin", json={"email": "", "password": ""}, timeout=60
    ).json()["token"]
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=webui, headers=headers, timeout=120) as http:
        ollama_key(http, gateway)
        models = http.get("/api/models", params={"refresh": "true"}).json()["data"]
        seen = {(m["id"], m.get("owned_by")) for m in models}
        print("Open WebUI lists:", sorted(seen))
        ollama_tags = http.get("/ollama/api/tags").json()
        print("  through its Ollama backend:", [m["name"] for m in ollama_tags["models"]])
        openai_models = http.get("/openai/models").json()
        print("  through its OpenAI backend:", [m["id"] for m in openai_models["data"]])
        wanted = {("smollm2:latest", "ollama"), (MODEL, "openai")}
        if not wanted <= seen:
            failures.append(f"expected {sorted(wanted)} among the models, saw {sorted(seen)}")
        for model_id, owner in sorted(wanted & seen):
            text, chunks = streamed(http, model_id)
            print(f"  chat via {owner} ({model_id!r}): {chunks} chunks: {text!r}")
            if chunks < 2 or "paris" not in text.lower():
                failures.append(f"the {owner} stream was {chunks} chunks: {text!r}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open-webui", default="/work/venvs/openwebui/bin/open-webui")
    parser.add_argument("--startup-timeout", type=float, default=600)
    args = parser.parse_args()
    gguf, llama_server = provision.smollm2_gguf(), provision.llama_server()
    with tempfile.TemporaryDirectory(prefix="famous-open-webui-") as tmp:
        folder = Path(tmp)
        gateway_port, webui_port = free_port(), free_port()
        gateway = f"http://127.0.0.1:{gateway_port}"
        env = dict(os.environ, FAMOUS_HOME=str(folder / "famous"))
        env |= {"FAMOUS_LLAMA_SERVER": str(llama_server), "NO_PROXY": "127.0.0.1"}
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        started = time.monotonic()
        with process(gateway_command(gateway_port, gguf), env, folder / "gateway.log") as gw:
            wait_for(gateway + "/health", gw, folder / "gateway.log", 60)
            command = [args.open_webui, "serve", "--host", "127.0.0.1", "--port", str(webui_port)]
            log = folder / "open-webui.log"
            webui = f"http://127.0.0.1:{webui_port}"
            with process(command, webui_env(folder, gateway, webui_port), log) as ui:
                wait_for(webui + "/health", ui, log, args.startup_timeout)
                print(f"Open WebUI answered after {time.monotonic() - started:.0f} s")
                failures = check(webui, gateway)
    for failure in failures:
        print("FAILED:", failure)
    print("OK" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
