"""A hostile user's battery, counted: malformed entries, absurd values for every spec key,
bad command lines, bad environment values, output paths aimed at the store or a user's
folder, bad search blocks, odd image folders, store files that are not files, damaged
stores, and signals into `harness study`, each through the real `harness` command in a
scratch project.

    python bench/hostile.py [--values-per-key 6] [--train-accepted 12] [--study-signals 8]

For each case: clean (one `error:` line, exit 2, or exit 1 for a run that failed), accepted
(exit 0), traceback (a Python traceback anywhere in the output), store written (the store
was created or gained a run where the command should have refused before writing), left
open (a run left RUNNING or SCHEDULED that was not before), user file harmed (a file the
battery put beside the project changed). Every key of the schema is set on `final` (`--set
key=value`, the path an entry's value takes too) to absurd values; the combinations `show`
accepts are also trained for one epoch on 100 digits (N of them, at random), so "accepted"
means accepted by the whole command. The study signals land at random moments of a
two-worker study of three tiny cells; the same command is then run until it completes.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, scratch_project  # noqa: E402

ABSURD = [
    "yes",
    "no",
    "'3'",
    ".inf",
    "-.inf",
    ".nan",
    "-1",
    "0",
    "1.0e+400",
    "[]",
    "{}",
    "null",
    "true",
    "'" + "x" * 300 + "'",
    "4294967296",
    "-0.5",
    "1.5",
    "'relu'",
    "[1, 2]",
    "{a: 1}",
]
RAW = [
    "",
    "---",
    "- a\n- b",
    "extends: [baseline]",
    "extends: baseline\nextends: adam",
    "{{{",
    "extends: baseline\nmodel: 3",
    "extends: ../baseline",
    "extends: nowhere",
    "extends: baseline\nreport: {val_accuracy: high}",
    "extends: baseline\nsearch: 5",
    "extends: baseline\ndescription: [1, 2]",
    "extends: baseline\nmodel: {blocks: null}",
    "extends: baseline\nmodel: {blocks: [3]}",
    "\x00\x01\x02",
    "extends: baseline\ntraining: !!python/object/apply:os.system ['true']",
    "extends: baseline\n\tmodel: {}",
    "a: &a [*a]",
    "extends: baseline\nmodel: {dense: [{units: 0}]}",
]
COMMAND_LINES = [
    ["run-ablation"],
    ["run-ablation", "baseline", "--bogus"],
    ["run-ablation", "baseline", "--epochs", "abc"],
    ["run-ablation", "baseline", "--epochs", "-3"],
    ["run-ablation", "baseline", "--epochs", "0"],
    ["nosuchcmd"],
    ["run-ablation", "baseline", "--seeds", "0,-1"],
    ["run-ablation", "baseline", "--seeds", "x"],
    ["run-ablation", "baseline", "--seeds", "0,0"],
    ["run-ablation", "baseline", "--seeds", "99999999999"],
    ["run-ablation", "baseline", "--set", "x"],
    ["run-ablation", "baseline", "--set", "=3"],
    ["run-ablation", "baseline", "--set", "training.epochs="],
    ["run-ablation", "baseline", "--set", "model.blocks.9.filters=3"],
    ["run-ablation", "baseline", "--set", "training.epochs=.nan"],
    ["run-ablation", "baseline", "--dataset", "mnist"],
    ["run-ablation", "baseline", "--dataset", "folder:"],
    ["run-ablation", "baseline", "--dataset", "folder:/etc"],
    ["run-ablation", "baseline", "--dataset", "folder:/x/good #2"],
    ["run-ablation", "a" * 300],
    ["run-ablation", "baseline\n"],
    ["run-ablation", "../etc/passwd"],
    ["run-ablation", "BASELINE"],
    ["run-ablation", "baseline", "--tracking-uri", "garbage"],
    ["run-ablation", "baseline", "--tracking-uri", "foo://bar"],
    ["run-ablation", "baseline", "--tracking-uri", "sqlite:////no/dir/x.db"],
    ["run-ablation", "baseline", "--tracking-uri", "http://127.0.0.1:1"],
    ["tune", "baseline"],
    ["tune", "baseline", "--trials", "0"],
    ["tune", "baseline", "--trials", "1", "--pruner", "sometimes"],
    ["tune", "baseline", "--trials", "1", "--metric", "f1"],
    ["tune", "baseline", "--trials", "1", "--storage", "nonsense"],
    ["tune", "same_padding", "--trials", "1"],
    ["compare", "--format", "xls"],
    ["compare", "--metric", "nope"],
    ["compare", "--out", "/no/such/dir/x.md"],
    ["compare", "nowhere"],
    ["compare", "--chain", "nowhere"],
    ["select", "--metric", "nope"],
    ["report", "--format", "pdf"],
    ["ablate", "final"],
    ["ablate", "nowhere", "--leave-one-out"],
    ["save-best", "baseline", "../x"],
    ["show", "final", "--set", "x=1"],
    ["ui", "--port", "notaport"],
    ["dashboard", "--storage", "nonsense://"],
    # issue 24's cases
    ["run-ablation", "baseline", "--seeds", "1_0"],
    ["run-ablation", "baseline", "--seeds", " 3"],
    ["study", "baseline", "--seeds", "0"],
    ["compare", "--any-settings", "--epochs", "1"],
    ["compare", "baseline", "baseline"],
    ["compare", "--set", "training.epochs=abc"],
    ["compare", "--epochs", "0"],
    ["select", "--epochs", "-1"],
    ["report", "--set", "training.batch_size=yes"],
    ["study", "baseline", "--name", "a\nb"],
    ["study", "baseline", "--seeds", "1", "--workers", "2", "--storage", "sqlite:///:memory:"],
    ["tune", "focal_loss", "--trials", "1", "--storage", "sqlite://"],
    ["study", "baseline", "--seeds", "1", "--storage", "sqlite:///mlruns/mlflow.db"],
    ["ui", "--host", "999.1.1.1"],
    ["ui", "--port", "70000"],
]
ENVIRONMENTS = [
    ({"HARNESS_CACHE": "/dev/null"}, ["run-ablation", "baseline", "--epochs", "1"]),
    ({"HARNESS_HEARTBEAT_SECONDS": "abc"}, ["study", "baseline", "--seeds", "1"]),
    ({"HARNESS_GRACE_SECONDS": "0"}, ["tune", "focal_loss", "--trials", "1"]),
    ({"HARNESS_ROOT": "/nonexistent"}, ["list"]),
    ({"MLFLOW_TRACKING_URI": "garbage"}, ["run-ablation", "baseline", "--epochs", "1"]),
]
CLAIMS = [
    "report: {val_accuracy: -3.0}",
    "report: {test_accuracy: 90}",
    "report: {val_loss: -0.1}",
    "model: {arch: vgg16, trainable: 'top:x'}",
    "training: {yes: 3}",
    "model: {bn_momentum: 2.0}",
]


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def image_folders(base: Path) -> list[tuple[str, Path]]:
    """Odd image folders, each a dataset a user might point --dataset folder: at."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    made = []

    def tree(name: str, size: int = 8, test: int | None = None) -> Path:
        root = base / name
        for part, side in (("train", size), ("test", test)):
            if side is None:
                continue
            for cls in ("cat", "dog"):
                (root / part / cls).mkdir(parents=True)
                for i in range(10):
                    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
                        root / part / cls / f"{i}.png"
                    )
        return root

    root = tree("dangling")
    (root / "train" / "cat" / "gone.png").symlink_to(root / "nowhere.png")
    made.append(("dangling symlink", root))
    root = tree("looping")
    (root / "train" / "cat" / "loop.png").symlink_to(root / "train" / "cat" / "loop.png")
    made.append(("looping symlink", root))
    root = tree("bomb")
    (root / "train" / "dog" / "bomb.png").write_bytes(png_claiming(60000, 60000))
    made.append(("decompression bomb", root))
    root = tree("not_an_image")
    (root / "train" / "dog" / "fake.png").write_bytes(b"not a png at all")
    made.append(("a .png that is text", root))
    made.append(("test images of another size", tree("sizes", 8, 12)))
    root = tree("mixed_sizes")
    Image.fromarray(np.zeros((9, 9, 3), dtype=np.uint8)).save(root / "train" / "cat" / "odd.png")
    made.append(("one training image of another size", root))
    root = base / "one_class"
    (root / "train" / "cat").mkdir(parents=True)
    made.append(("one class only", root))
    root = base / "empty_classes"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "dog").mkdir(parents=True)
    made.append(("class folders without images", root))
    return made


class Battery:
    def __init__(self, project: Path):
        self.project = project
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def store_state(self) -> int:
        """-1 when there is no store, else the number of runs in it."""
        return self._count("select count(*) from runs")

    def open_runs(self) -> int:
        """Runs RUNNING or SCHEDULED in the store (0 without one)."""
        return max(self._count("select count(*) from runs where status in ('RUNNING', 'SCHEDULED')"), 0)

    def _count(self, query: str) -> int:
        db = self.project / "mlruns" / "mlflow.db"
        if not db.is_file():
            return -1
        import contextlib
        import sqlite3

        try:
            with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
                return connection.execute(query).fetchone()[0]
        except sqlite3.DatabaseError:
            return -2  # damaged on purpose, at the end

    def user_files(self) -> dict[str, bytes]:
        """What the battery keeps beside the project as a user's own files."""
        return {str(p): p.read_bytes() for p in sorted((self.project / "user").rglob("*")) if p.is_file()}

    def run(self, label: str, args: list[str], may_write: bool = False, env: dict | None = None) -> str:
        before, opened, files = self.store_state(), self.open_runs(), self.user_files()
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "harness", *args],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **(env or {})},
        )
        seconds = time.perf_counter() - started
        output = result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        wrote = self.store_state() != before
        if "Traceback" in output:
            verdict = "traceback"
        elif result.returncode == 0:
            verdict = "accepted"
        elif (
            result.returncode in (1, 2)
            and errors
            and errors[-1].startswith("error: ")
            and all(line.startswith("warning: ") for line in errors[:-1])
        ):
            verdict = "clean"  # one error line (after warnings about other entries, if any)
        else:
            verdict = f"other exit {result.returncode}"
        self.counts["cases"] += 1
        self.counts[verdict] += 1
        if wrote and not may_write and verdict != "accepted":
            self.counts["store written"] += 1
            verdict += " +store written"
        if self.open_runs() > opened:
            self.counts["left open"] += 1
            verdict += " +left RUNNING or SCHEDULED"
        if self.user_files() != files:
            self.counts["user file harmed"] += 1
            verdict += " +user file harmed"
        if seconds > 5 and verdict == "clean" and "tracking-uri" not in " ".join(args):
            self.counts["slow refusals (>5 s)"] += 1
            self.examples.setdefault("slow refusal", []).append(f"{label}: {seconds:.1f} s")
        said = errors[-1] if errors else ("(nothing on stderr)" if result.returncode == 0 else output[-200:])
        self.examples.setdefault(verdict, []).append(f"{label}: {said.strip()[:160]}")
        return verdict


def output_paths(battery: Battery) -> None:
    """--out and --chart aimed at the store, a link to it, a user's folder, a folder, a
    device, nothing, a read-only folder, a wrong suffix: refused, the store and the user's
    files unchanged. Needs a finished run first (trained here, one epoch)."""
    project = battery.project
    tiny = ["--epochs", "1", "--set", "data.subset=240"]
    battery.run("setup: one finished run", ["run-ablation", "baseline", *tiny], may_write=True)
    user = project / "user"
    (user / "notes_files").mkdir(parents=True)
    (user / "notes_files" / "important.txt").write_text("mine")
    (user / "ro").mkdir()
    os.chmod(user / "ro", 0o500)
    (project / "link.db").symlink_to(project / "mlruns" / "mlflow.db")
    cases = [
        ["compare", "--subset", "240", "--out", "mlruns/mlflow.db"],
        ["compare", "--subset", "240", "--out", "link.db"],
        ["report", "--subset", "240", "--format", "html", "--out", "mlruns/mlflow.db"],
        ["report", "--subset", "240", "--out", "user/notes.md"],
        ["report", "--subset", "240", "--out", "user"],
        ["compare", "--subset", "240", "--chart", "user"],
        ["compare", "--subset", "240", "--out", "/dev/full"],
        ["compare", "--subset", "240", "--chart", "/dev/full"],
        ["compare", "--subset", "240", "--out", ""],
        *([] if os.geteuid() == 0 else [["compare", "--subset", "240", "--out", "user/ro/t.md"]]),  # root writes anyway
        ["compare", "--subset", "240", "--chart", "x.xyz"],
        ["ablate", "baseline", "--leave-one-out", "--chart", "/dev/full", *tiny],
        ["ablate", "baseline", "--leave-one-out", "--chart", "mlruns/backups/f.png", *tiny],
    ]
    for line in cases:
        battery.run(" ".join(line)[:60], line)


def store_not_a_file(battery: Battery) -> None:
    """mlflow.db replaced by a folder, a FIFO, a link to /dev/null: named as such."""
    project = battery.project
    db = project / "mlruns" / "mlflow.db"
    saved = project / "saved.db"
    db.rename(saved)
    for label, make in (
        ("a folder", lambda: db.mkdir()),
        ("a FIFO", lambda: os.mkfifo(db)),
        ("a link to /dev/null", lambda: db.symlink_to("/dev/null")),
    ):
        make()
        for line in (["compare"], ["run-ablation", "baseline", "--epochs", "1"], ["select"]):
            battery.run(f"mlflow.db is {label}: {line[0]}", line)
        db.rmdir() if db.is_dir() and not db.is_symlink() else db.unlink()
    saved.rename(db)


STUDY_CHAIN = {
    "geo": "description: One small valid block.\nmodel: {blocks: [{filters: 4, convs: 1}], padding: valid}\n"
    "optimizer: {name: adam, learning_rate: 0.01}\ntraining: {epochs: 2, batch_size: 64}\ndata: {subset: 300}\n",
    "geo_same": "extends: geo\ndescription: Same padding.\nmodel: {padding: same}\n",
    "geo_deep": "extends: geo_same\ndescription: A second block.\n"
    "model: {blocks: [{filters: 4, convs: 1}, {filters: 4, convs: 1}]}\n",
}


TRACEBACKS: list[str] = []  # the study signals' tracebacks, printed at the end


def _count_traceback(counts: Counter, when: str, output: str) -> None:
    if "Traceback" in output:
        counts["tracebacks"] += 1
        TRACEBACKS.append(f"{when}:\n" + output[output.index("Traceback") :][-3000:])


def study_signals(count: int, rng: random.Random) -> dict:
    """SIGINT or SIGTERM at a random moment of `harness study geo_deep --seeds 1 --workers 2`
    (three cells, then the final steps), each in a new project; then the same command run
    until it completes (at most three times). Counted: exits other than 130/143, aborts,
    tracebacks, reruns, complete studies, runs left RUNNING or SCHEDULED at the end."""
    import sqlite3

    counts = Counter()
    command = [sys.executable, "-m", "harness", "study", "geo_deep", "--seeds", "1", "--workers", "2"]
    reference = scratch_project()  # one study undisturbed: the signals land within its length
    for name, text in STUDY_CHAIN.items():
        (reference / "ablations" / f"{name}.yaml").write_text(text)
    started = time.perf_counter()
    subprocess.run(command, cwd=reference, capture_output=True, timeout=900)
    length = time.perf_counter() - started
    counts["study seconds"] = round(length)
    for index in range(count):
        project = scratch_project()
        for name, text in STUDY_CHAIN.items():
            (project / "ablations" / f"{name}.yaml").write_text(text)
        signum = signal.SIGINT if index % 2 == 0 else signal.SIGTERM
        process = subprocess.Popen(
            command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        time.sleep(rng.uniform(1.0, 0.9 * length))
        landed = process.poll() is None
        if landed:
            process.send_signal(signum)
        output = process.communicate(timeout=600)[0]
        counts["signals"] += 1
        counts["landed"] += landed
        code = process.returncode
        if landed and code != {signal.SIGINT: 130, signal.SIGTERM: 143}[signum]:
            counts["bad exits"] += 1
            counts["aborts"] += code < 0
        _count_traceback(counts, f"signal {signum.name} after the study began", output)
        for _ in range(3):
            again = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=900)
            counts["reruns"] += 1
            _count_traceback(counts, "the rerun", again.stdout + again.stderr)
            if again.returncode == 0 and ("study run:" in again.stdout or "did the final steps" in again.stdout):
                counts["complete"] += 1
                break
        with sqlite3.connect(project / "mlruns" / "mlflow.db") as connection:
            counts["left open"] += connection.execute(
                "select count(*) from runs where status in ('RUNNING', 'SCHEDULED')"
            ).fetchone()[0]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values-per-key", type=int, default=6)
    parser.add_argument("--train-accepted", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study-signals", type=int, default=8, help="signals into `harness study` (0: none)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    from harness.entries.schema_help import schema_keys

    project = scratch_project()
    battery = Battery(project)
    accepted_entries = []
    # Every key of the schema, set on `final` (which switches every section on), to absurd values.
    keys = [k.replace(".N.", ".0.") for k in schema_keys() if not k.endswith(".N")]
    for key in keys:
        for value in rng.sample(ABSURD, min(args.values_per_key, len(ABSURD))):
            overrides = ["--set", f"{key}={value}"]
            if battery.run(f"{key}={value[:20]}", ["show", "final", *overrides]) == "accepted":
                accepted_entries.append((f"{key}={value[:20]}", overrides))
    for i, text in enumerate(RAW):
        (project / "ablations" / f"raw{i}.yaml").write_text(text)
        battery.run(f"raw {text[:20]!r}", ["run-ablation", f"raw{i}"])
    for line in COMMAND_LINES:
        battery.run(" ".join(line)[:60], line)
    for env, line in ENVIRONMENTS:
        battery.run(f"{env} {' '.join(line)[:40]}", line, env=env)
    for i, text in enumerate(CLAIMS):
        (project / "ablations" / f"claim{i}.yaml").write_text(f"extends: baseline\n{text}\n")
        battery.run(f"entry {text[:40]!r}", ["run-ablation", f"claim{i}"])
        (project / "ablations" / f"claim{i}.yaml").unlink()
    output_paths(battery)
    store_not_a_file(battery)
    for label, root in image_folders(project / "folders"):
        battery.run(
            f"folder: {label}", ["run-ablation", "same_padding", "--epochs", "1", "--dataset", f"folder:{root}"]
        )
    trained = 0
    rng.shuffle(accepted_entries)
    for label, overrides in accepted_entries[: args.train_accepted]:
        command = ["run-ablation", "final", "--epochs", "1", "--set", "data.subset=100", *overrides]
        verdict = battery.run(f"trained {label}", command, may_write=True)
        trained += verdict == "accepted"
    db = project / "mlruns" / "mlflow.db"
    if db.exists():
        db.write_bytes(b"garbage" * 1000)
        for verb in (["compare"], ["run-ablation", "adam", "--epochs", "1"], ["report"]):
            battery.run(f"damaged store: {verb[0]}", verb)
    study = study_signals(args.study_signals, rng) if args.study_signals else None
    print(f"machine: {machine()}")
    c = battery.counts
    print(
        f"cases {c['cases']}: clean {c['clean']}, accepted {c['accepted']}, traceback {c['traceback']}, "
        f"store written {c['store written']}, left RUNNING or SCHEDULED {c['left open']}, "
        f"user file harmed {c['user file harmed']}, "
        f"other {sum(v for k, v in c.items() if k.startswith('other'))}, slow refusals {c['slow refusals (>5 s)']}"
    )
    if study:
        print(
            f"study signals {study['signals']} (landed {study['landed']}, within the {study['study seconds']} s "
            f"an undisturbed study takes): exits other than 130/143 "
            f"{study['bad exits']}, aborts {study['aborts']}, tracebacks {study['tracebacks']}; "
            f"reruns to complete {study['reruns']}, studies complete {study['complete']}/{study['signals']}, "
            f"runs left RUNNING or SCHEDULED after them {study['left open']}"
        )
    print(
        f"accepted by `show` and then trained one epoch: {min(len(accepted_entries), args.train_accepted)} "
        f"of {len(accepted_entries)}, of which finished: {trained}"
    )
    for verdict, examples in sorted(battery.examples.items()):
        print(f"\n{verdict} ({len(examples)}), e.g.:")
        for example in examples[: 4 if verdict == "clean" else 12]:
            print(f"  {example}")
    for traceback in TRACEBACKS:
        print(f"\nstudy traceback, {traceback}")


if __name__ == "__main__":
    main()
