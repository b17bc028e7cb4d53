"""Kill a run at random moments until it finishes; check it equals an uninterrupted run.

Not collected by pytest (tests/test_reliability.py kills at exact points); run
by hand for the counts in RELIABILITY.md:

    python tests/stress_kill.py --kills=40 --term_prob=0.3 --seed=0

Each attempt starts `python -m lrr_jax.main` (quickstart, lrr, 3 levels of 4
epochs, a mid-level save after every epoch), waits a random time and sends
SIGKILL (or SIGTERM with probability term_prob), and starts it again, until a
process finishes on its own; then results.csv, sign_flips.csv and every
checkpoint must equal the uninterrupted run's bit for bit. Cycles (each in a
fresh workdir) repeat until `--kills` signals were sent. Prints one JSON
object: signals sent, exit statuses seen (-15: a SIGTERM that arrived during
start-up, before the handler was installed), cycles checked.
"""

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ARGS = ["--config=configs/quickstart.py", "--config.methods=lrr", "--config.levels=3",
        "--config.epochs_per_level=4", "--config.warmup_epochs=2",
        "--config.checkpoint_every_epochs=1", "--config.num_replicas=1",
        "--config.progress=False", "--config.tensorboard=False"]


def start(workdir, env):
    return subprocess.Popen([sys.executable, "-m", "lrr_jax.main", *ARGS,
                             f"--workdir={workdir}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kills", type=int, default=40)
    p.add_argument("--term_prob", type=float, default=0.3)
    p.add_argument("--min_s", type=float, default=2.0)
    p.add_argument("--max_s", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    root = tempfile.mkdtemp(prefix="lrr_stress_")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=os.path.join(root, "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("LRR_JAX_FAULT", None)
    ref = os.path.join(root, "reference")
    proc = start(ref, env)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    sys.path.insert(0, HERE)
    import pathlib

    from test_reliability import assert_same_run

    sent, statuses, tmp_left, cycles = collections.Counter(), collections.Counter(), 0, 0
    t0 = time.time()
    while sum(sent.values()) < a.kills:
        # One cycle: a fresh workdir, signalled at random moments until a process finishes.
        cycles += 1
        work = os.path.join(root, f"run_{cycles}")
        while True:
            proc = start(work, env)
            time.sleep(rng.uniform(a.min_s, a.max_s))
            if sum(sent.values()) < a.kills and proc.poll() is None:
                sig = signal.SIGTERM if rng.random() < a.term_prob else signal.SIGKILL
                proc.send_signal(sig)
                sent[sig.name] += 1
            _, err = proc.communicate()
            statuses[proc.returncode] += 1
            tmp = os.path.join(work, "lrr", "checkpoints", ".tmp")
            tmp_left += bool(os.path.isdir(tmp) and os.listdir(tmp))
            if proc.returncode not in (0, -9, -15, 143):
                print(err, file=sys.stderr)
                raise SystemExit(f"unexpected exit status {proc.returncode}")
            if proc.returncode == 0:
                break
        assert_same_run(pathlib.Path(ref) / "lrr", pathlib.Path(work) / "lrr")
    print(json.dumps({"signals_sent": dict(sent), "exit_statuses": dict(statuses),
                      "cycles_all_identical_to_uninterrupted": cycles,
                      "kills_leaving_a_partial_save": tmp_left,
                      "seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
