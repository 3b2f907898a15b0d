"""Pull speed: famous vs huggingface_hub.snapshot_download of the same files, same run.

Serves a ~200 MB GGUF repo from the local Hub-protocol server (its own process, on
127.0.0.1), then times, alternately and on fresh folders, ``famous.hub.pull.pull`` (listing,
engine choice, download with sha256 verification, catalog registration) and
``snapshot_download(allow_patterns=<the same file>)``. Prints the median of each and the
ratio famous / snapshot_download (goal: <= 1.05).

    python benchmarks/pull_speed.py [--size-mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "lifecycle"))


def build_repo(root: Path, size_mb: int) -> str:
    from builders import tiny_gguf

    repo = root / "bench" / "Bench-GGUF"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("# bench\n")
    (repo / "config.json").write_text("{}")
    head = tiny_gguf("Q4_K_M", 64 * 1024)
    with open(repo / "bench-q4_k_m.gguf", "wb") as f:
        f.write(head)
        left = size_mb * 1024 * 1024 - len(head)
        while left > 0:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n
    (repo / "bench-q8_0.gguf").write_bytes(tiny_gguf("Q8_0", 64 * 1024))
    return "bench/Bench-GGUF"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo_id = build_repo(work / "repos", args.size_mb)
        server = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "lifecycle" / "hub_server.py"),
                str(work / "repos"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            os.environ.update(
                {
                    "HF_ENDPOINT": url,
                    "HF_HUB_DISABLE_XET": "1",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                    "HF_HUB_DISABLE_TELEMETRY": "1",
                    "HF_HOME": str(work / "hf"),
                }
            )
            os.environ.pop("HF_TOKEN", None)
            from huggingface_hub import snapshot_download

            from famous.hardware import detect
            from famous.hub.pull import pull

            famous_times, hf_times = [], []
            for i in range(args.rounds):
                os.environ["FAMOUS_HOME"] = str(work / f"famous-{i}")
                t = time.perf_counter()
                result = pull(repo_id, report=detect())
                famous_times.append(time.perf_counter() - t)
                assert not result.reused and result.variant == "q4_k_m"
                files = [f.relpath for f in result.artifact.files]

                t = time.perf_counter()
                snapshot_download(
                    repo_id,
                    allow_patterns=files,
                    local_dir=work / f"hf-{i}",
                    cache_dir=work / f"hf-cache-{i}",
                )
                hf_times.append(time.perf_counter() - t)
            f_med, h_med = statistics.median(famous_times), statistics.median(hf_times)
            size = sum(f.size_bytes for f in result.artifact.files) / 1e6
            print(f"repo: {repo_id}, {size:.0f} MB fetched ({', '.join(files)})")
            for label, times, med in (
                ("famous pull", famous_times, f_med),
                ("snapshot_download", hf_times, h_med),
            ):
                runs = ", ".join(f"{x:.3f}" for x in times)
                print(f"{label + ':':<20}{runs} s  (median {med:.3f})")
            print(f"ratio famous / snapshot_download: {f_med / h_med:.3f}  (goal <= 1.05)")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
