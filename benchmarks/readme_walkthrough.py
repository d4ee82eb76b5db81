"""A new user's walkthrough of the README: every shell command in document order, timed, offline, watched for silence.

Run it from the root of a fresh clone (the commands' relative paths are the clone's). Every line of every ```bash
block of README.md runs as written, with ``bash -c`` in the clone's root and the quick start's virtual environment
on ``PATH``, ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (package registries stay reachable, as on a user's
machine). For each command the script records the exit status, the wall time and the longest stretch in which it
wrote nothing to stdout or stderr (a tqdm redraw counts: it is what a user sees move). The README's Python snippets
and the model cards' run through ``tests/test_snippets.py`` (in document order, one namespace per document, a local
stand-in for the Hub for the ``push_to_hub`` lines), as a step of their own, with ``-s`` so their output shows as a
user's would.

    python benchmarks/readme_walkthrough.py                       # everything, the quick start's install included
    python benchmarks/readme_walkthrough.py --skip "logitmlp reproduce" --skip "python -m pytest -q"

``--skip COMMAND`` leaves out the command that is exactly COMMAND (reported as skipped, "asked"); the skipped commands'
outputs must then already be there (e.g. ``outputs/reproduce`` for ``logitmlp analyze``). Commands that cannot run
on a CPU machine without the Hub are skipped with their reason (``NEEDS``). Each command's output goes to
``<log-dir>/NN.log``; the table goes to stdout, followed by ``RESULT walkthrough_failed=<n>``,
``RESULT walkthrough_max_silence_s=<s>`` and ``RESULT walkthrough_minutes=<m>`` (the commands that ran).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


# Substring of a command -> why it cannot run on the offline 2-core CPU machine the walkthrough is for.
NEEDS = {
    "multi_gpu.yaml": "several GPUs and Qwen3-1.7B-Base / DAPO-Math-17K from the Hub",
    "logitmlp vllm-serve": "the vllm extra (tests/test_vllm.py serves a head in CI's vLLM venv); a server runs "
    "until stopped",
    "bench_vllm.py": "the vllm extra",
}


@dataclass
class Step:
    line: int
    command: str
    status: str = "skipped"
    reason: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    max_silence: float = 0.0
    silent_after: str = ""


def bash_commands(readme: Path) -> list[tuple[int, str]]:
    """(README line, command) for every command of every ```bash block; ``\\`` continuations joined."""
    commands, in_block, pending, start = [], False, "", 0
    for number, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            in_block = line.strip() == "```bash" and not in_block
            continue
        if not in_block or (not pending and (not line.strip() or line.lstrip().startswith("#"))):
            continue
        start = start if pending else number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append((start, (pending + line).strip()))
        pending = ""
    return commands


def quick_start_parts(command: str) -> list[str]:
    """The quick start's first line is ``install && ... && logitmlp reproduce``: timed as install and main job."""
    parts = [p.strip() for p in command.split("&&")]
    if len(parts) > 1 and parts[-1].startswith("logitmlp "):
        return [" && ".join(parts[:-1]), parts[-1]]
    return [command]


def run(command: str, root: Path, env: dict[str, str], log: Path) -> tuple[int, float, float, str]:
    """(exit status, seconds, longest silence in seconds, the output line it followed) of ``bash -c command``, its
    output teed to ``log``."""
    start = last = time.monotonic()
    longest, tail, silent_after = 0.0, b"", ""
    with log.open("wb") as sink:
        sink.write(f"$ {command}\n".encode())
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        selector = selectors.DefaultSelector()
        for stream in (process.stdout, process.stderr):
            selector.register(stream, selectors.EVENT_READ)
        open_streams = 2
        while open_streams:
            for key, _ in selector.select(timeout=5):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                now = time.monotonic()
                if now - last > longest:
                    longest, silent_after = now - last, last_line(tail)
                last, tail = now, (tail + chunk)[-400:]
                sink.write(chunk)
                sink.flush()
        returncode = process.wait()
    end = time.monotonic()
    if end - last > longest:
        longest, silent_after = end - last, last_line(tail)
    return returncode, end - start, longest, silent_after


def last_line(output: bytes) -> str:
    """The last non-empty line (or tqdm redraw) of some output."""
    lines = [p.strip() for p in re.split(r"[\r\n]", output.decode(errors="replace")) if p.strip()]
    return lines[-1][-100:] if lines else "(no output yet)"


def cpu_name() -> str:
    # logitmlp_hf.reproduce.report.machine_description's CPU name, without importing the package: this script runs
    # with any python3, before the walkthrough's own first command has installed anything.
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if found:
            return found.group(1).strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", action="append", default=[], help="leave out this exact command")
    parser.add_argument("--log-dir", default="outputs/walkthrough", help="one log per command (default: %(default)s)")
    parser.add_argument(
        "--no-snippets", action="store_true", help="do not run the README's and cards' Python snippets"
    )
    args = parser.parse_args()

    root = Path.cwd()
    readme = root / "README.md"
    if not readme.exists():
        parser.error(f"no README.md in {root}: run this from the root of a clone")
    log_dir = root / args.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    venv_bin = root / ".venv" / "bin"
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(root / ".venv"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }

    steps = []
    for line, command in bash_commands(readme):
        steps += [Step(line, part) for part in quick_start_parts(command)]
    if not args.no_snippets:
        steps.append(Step(0, 'python -m pytest -q -s tests/test_snippets.py -k "python_snippets"'))

    for number, step in enumerate(steps, start=1):
        asked = " ".join(step.command.split()) in {" ".join(s.split()) for s in args.skip}
        need = next((why for key, why in NEEDS.items() if key in step.command), None)
        if asked or need:
            step.reason = "asked" if asked else f"needs {need}"
            print(f"[{number}/{len(steps)}] skipped ({step.reason}): {step.command}", file=sys.stderr, flush=True)
            continue
        print(f"[{number}/{len(steps)}] {step.command}", file=sys.stderr, flush=True)
        step.returncode, step.seconds, step.max_silence, step.silent_after = run(
            step.command, root, env, log_dir / f"{number:02d}.log"
        )
        step.status = "ok" if step.returncode == 0 else "FAILED"
        print(
            f"[{number}/{len(steps)}] {step.status} in {step.seconds:.0f} s, longest silence {step.max_silence:.0f} s "
            f"after {step.silent_after!r}",
            file=sys.stderr,
            flush=True,
        )

    ran = [s for s in steps if s.status != "skipped"]
    print(f"README walkthrough in {root} ({cpu_name()}, {os.cpu_count()} CPUs)")
    print("| # | README line | command | status | s | longest silence s | it followed |")
    print("|---|---|---|---|---|---|---|")
    for number, s in enumerate(steps, start=1):
        shown = re.sub(r"\s+", " ", s.command).replace("|", "\\|")
        status = s.status if s.status != "skipped" else f"skipped: {s.reason}"
        after = s.silent_after.replace("|", "/")
        print(
            f"| {number} | {s.line or 'Python'} | `{shown}` | {status} | {s.seconds:.0f} | {s.max_silence:.0f} | {after} |"
        )
    print(f"RESULT walkthrough_failed={sum(s.status == 'FAILED' for s in ran)}")
    print(f"RESULT walkthrough_max_silence_s={max((s.max_silence for s in ran), default=0.0):.1f}")
    print(f"RESULT walkthrough_minutes={sum(s.seconds for s in ran) / 60:.1f}")


if __name__ == "__main__":
    main()
