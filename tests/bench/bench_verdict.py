"""How long users wait for a verdict (issue 12): P1 and P8, each against its floor.

- P1: the pull request's checks (``nox -s lint tests -- -m "not act"``, then ``local_train``
  and ``local_predict``) with warm environments, against a bare TensorFlow import.
- P8: the pull request's rehearsal of the merge path (the reusable workflow, platform local)
  under act, against ``python -m ci pipeline`` alone with the same steps.

Every measure runs the real commands in a clone of this repository's HEAD (commit what
you measure; P7, the README's test command on fresh clones, is ``bench_readme.py``); the
kinds are interleaved and repeated, and the tables show medians.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.workflows_act import REHEARSAL_INPUTS, REHEARSE, SLUG, Sandbox, pull_request
from tests.workflows_act import git as git_in

ROOT = Path(__file__).resolve().parents[2]
REPEATS = 3
# The rehearsal and the pipeline take seconds and vary by seconds on a shared machine:
# P8 takes more pairs (the P1 rounds' three, then the rest) for a steadier median.
P8_REPEATS = 7
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
P1_COMMANDS = [
    'python3 -m nox -s lint tests -- -m "not act"',
    "python3 -m nox -s local_train",
    "python3 -m nox -s local_predict",
]
# The rehearsal is the act tests' caller of the reusable workflow (train-steps 200).
REHEARSAL_STEPS = int(REHEARSAL_INPUTS["train-steps"])


# Counts the processes of one environment that import TensorFlow: a .pth file runs this at
# every interpreter start; the finder only looks at the name and steps aside.
_COUNTER = """
import sys
class _TensorFlowStarts:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "tensorflow":
            sys.meta_path.remove(_TensorFlowStarts)
            with open({log!r}, "a") as f:
                f.write(" ".join(sys.argv)[:300] + "\\n")
        return None
sys.meta_path.insert(0, _TensorFlowStarts)
"""


def _count_tensorflow_starts(venv: Path, log: Path) -> None:
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "_bench_tf_starts.py").write_text(_COUNTER.format(log=str(log)))
    (site / "_bench_tf_starts.pth").write_text("import _bench_tf_starts\n")


def _kinds(argvs: list[str]) -> dict[str, int]:
    """How many TensorFlow starts were trainers, emulators and anything else."""
    kinds = {"trainer": 0, "emulator": 0, "other": 0}
    for argv in argvs:
        kind = "trainer" if "trainer/task.py" in argv or "trainer.task" in argv else None
        kinds[kind or ("emulator" if "ci/__main__.py emulator" in argv else "other")] += 1
    return kinds


def _clone(dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    return dest


def _env() -> dict[str, str]:
    # The bench session's own variables (its venv, nox's) must not reach the commands.
    skip = ("VIRTUAL_ENV", "NOX_CURRENT_SESSION", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    bench_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != bench_bin)
    return {**env, **QUIET}


def _shell(command: str, cwd: Path, log: Path) -> float:
    """Wall seconds of ``command`` (bash) in ``cwd``; its output goes to ``log``."""
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ {command}\n")
        out.flush()
        proc = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT
        )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command!r} failed in {cwd} (exit {proc.returncode}); see {log}")
    return seconds


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _import_seconds(python: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "import tensorflow"], check=True, env=_env())
    return time.perf_counter() - start


def _pipeline_seconds(clone: Path, state: Path, log: Path) -> float:
    python = clone / ".nox" / "pipeline" / "bin" / "python"
    argv = [str(python), "-m", "ci", "pipeline", "--train-steps", str(REHEARSAL_STEPS)]
    argv += ["--state-dir", str(state), "--dist-dir", str(state.parent / "dist")]
    return _shell(shlex.join(argv), clone, log)


# The reusable workflow's steps that run the tooling (`run: python -P -m ci ...`), by name.
def _ci_steps(workflow: str) -> set[str]:
    names, name = set(), None
    for line in workflow.splitlines():
        if m := re.match(r"\s*- name: (.+)$", line):
            name = m[1]
        elif re.match(r"\s*run: python -P -m ci ", line):
            names.add(name)
    return names


CI_STEPS = _ci_steps((ROOT / ".github" / "workflows" / "train-and-deploy.yml").read_text())
_STEP_DONE = re.compile(r"Success - Main (.+?) \[([0-9.]+)(ms|s)\]$", re.MULTILINE)


def _ci_step_seconds(act_log: str) -> float:
    """Seconds the rehearsal spent in the steps that run ``python -m ci`` (from act's log)."""
    done = _STEP_DONE.findall(act_log)
    return sum(
        float(n) / (1000 if unit == "ms" else 1) for name, n, unit in done if name in CI_STEPS
    )


def _rehearsal_seconds(box: Sandbox, repo: Path) -> tuple[float, float]:
    """The rehearsal's wall seconds, and those of its `ci` steps."""
    sha = box.commit(repo, "a change under review")
    payload = pull_request(sha, "someone/fork")  # a fork: no comment job, as on most PRs
    run = box.run(repo, "pull_request", payload, workflow=".github/workflows/pr.yml")
    if run.rc != 0:
        raise RuntimeError(f"the act rehearsal failed: {box.root}/act-{run.run_id}.log")
    return run.seconds, _ci_step_seconds(run.log)


def run() -> str:
    load = os.getloadavg()[0]
    head = git_in(ROOT, "rev-parse", "--short", "HEAD")
    kinds_of_time = ("import", "p1", "p1_cpu", "p8", "ci", "pipeline")
    times: dict[str, list[float]] = {k: [] for k in kinds_of_time}
    tmp = Path(tempfile.mkdtemp(prefix="bench-verdict-"))
    log = tmp / "commands.log"
    try:
        warm = _clone(tmp / "warm")
        # Warm environments for P1 and the pipeline: created once, not timed.
        _shell("python3 -m nox -s lint tests local_train local_predict pipeline --install-only",
               warm, log)  # fmt: skip
        python = warm / ".nox" / "tests" / "bin" / "python"
        starts = tmp / "tensorflow-starts.log"
        box = Sandbox(tmp / "github")
        repo = box.create_repo(SLUG, source=warm, files={".github/workflows/pr.yml": REHEARSE})
        # Untimed: the first run fills the sandbox's caches (act's, and the local cloud's
        # champion the next runs gate against, as on a branch that ran before).
        _rehearsal_seconds(box, repo)
        for n in range(REPEATS):
            times["import"].append(_import_seconds(python))
            rehearsal, ci_steps = _rehearsal_seconds(box, repo)
            times["p8"].append(rehearsal)
            times["ci"].append(ci_steps)
            times["pipeline"].append(_pipeline_seconds(warm, tmp / f"state-{n}", log))
            if n == 0:  # the first round also counts the test processes that start TF
                _count_tensorflow_starts(warm / ".nox" / "tests", starts)
            cpu = _children_cpu()
            times["p1"].append(sum(_shell(c, warm, log) for c in P1_COMMANDS))
            times["p1_cpu"].append(_children_cpu() - cpu)
            if n == 0:
                for hook in (warm / ".nox" / "tests").glob("lib/python3*/site-packages/_bench*"):
                    hook.unlink()
        for n in range(REPEATS, P8_REPEATS):
            rehearsal, ci_steps = _rehearsal_seconds(box, repo)
            times["p8"].append(rehearsal)
            times["ci"].append(ci_steps)
            times["pipeline"].append(_pipeline_seconds(warm, tmp / f"state-{n}", log))
    except BaseException:
        print(f"bench verdict: kept {tmp} (commands.log, act-N.log) to see why", file=sys.stderr)
        raise
    kinds = _kinds(starts.read_text().splitlines() if starts.exists() else [])  # before rmtree
    shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    tf_starts = sum(kinds.values())
    cores = os.cpu_count() or 1
    floor = tf_starts * med["import"] / cores
    # P8's floor: the rehearsal's `ci` steps alone, with no runner around them.
    floor8 = med["ci"] / med["pipeline"]

    def runs(kind: str) -> str:
        return ", ".join(f"{s:.0f}" for s in times[kind])

    return "\n".join(
        [
            "### The verdict: pull request checks and the rehearsal (P1, P8)",
            "",
            f"Command: `nox -s bench -- verdict`, at commit {head}. Every command runs in a",
            f"clone of HEAD; medians of {REPEATS} interleaved runs ({P8_REPEATS} for the",
            "rehearsal and the pipeline, which take seconds; all runs in parentheses); load",
            f"average at the start: {load:.1f} on {os.cpu_count()} cores.",
            'The floor of P1 is a bare `python -c "import tensorflow"` of the same run.',
            "",
            "| id | measure | seconds | ratio | target |",
            "| --- | --- | ---: | ---: | --- |",
            f'| | `python -c "import tensorflow"` | {med["import"]:.1f} ({runs("import")}) | | |',
            f"| P1 | {' + '.join(f'`{c}`' for c in P1_COMMANDS)}, warm environments "
            f"| {med['p1']:.0f} ({runs('p1')}) | {med['p1'] / med['import']:.0f}× import "
            "| ≤ 10× |",
            f"| | `python -m ci pipeline --train-steps {REHEARSAL_STEPS}`, fresh state "
            f"| {med['pipeline']:.1f} ({runs('pipeline')}) | | |",
            f"| P8 | the pull request's rehearsal (train-and-deploy, platform local) under act, "
            "after an untimed one "
            f"| {med['p8']:.1f} ({runs('p8')}) | {med['p8'] / med['pipeline']:.2f}× pipeline "
            "| ≤ 1.5× |",
            "",
            f"The floor of P1: its processes used {med['p1_cpu']:.0f} CPU-seconds "
            f"({runs('p1_cpu')}), so on {os.cpu_count()} cores it cannot take less than "
            f"{med['p1_cpu'] / cores:.0f} s ({med['p1_cpu'] / cores / med['import']:.0f}× the "
            f"import); the other {med['p1'] - med['p1_cpu'] / cores:.0f} s are a core left idle",
            "(tests waiting for what they provoke, such as a deploy the emulator delays on",
            "purpose; lint, `local_train` and `local_predict`, one process each). In its first",
            "round the",
            f"tests alone started TensorFlow in {tf_starts} processes ({kinds['trainer']} "
            f"trainers, {kinds['emulator']} emulators that loaded a model, {kinds['other']} "
            "others: pytest workers, `local-predict`, ...; counted by an import hook in the",
            f"tests environment): {tf_starts} × {med['import']:.1f} s on {cores} cores = "
            f"{floor:.0f} s = {floor / med['import']:.0f}× the import, before any test does "
            f"its work. Ten times the import is, on {cores} cores, the time of {10 * cores}",
            "TensorFlow starts and nothing else.",
            "P8's floor: on platform `local` the rehearsal is two jobs, the plan and one job",
            "that runs `ci pipeline` (nothing waits for an approval there), as a push to `main`",
            "without a project deploys. Its steps that run `python -m ci` (from act's log: the",
            f"plan, and the pipeline with its report) took {med['ci']:.1f} s ({runs('ci')}):",
            f"{floor8:.2f}× the pipeline alone, which writes no report; the rest,",
            f"{med['p8'] - med['ci']:.1f} s, is the runner's: act starting two jobs, their",
            "checkouts, setting up Python and the tooling (`ci install-deps` finds it installed),",
            "restoring and saving the local cloud, uploading the report and the local cloud.",
        ]
    )
