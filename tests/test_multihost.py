"""Multi-process training on one CPU: 2 processes x 4 devices == 1 process x 8 devices.

Each process is started with `--xla_force_host_platform_device_count=4` and
joins the other through `lrr_jax.distributed` (gloo CPU collectives on
localhost), like hosts of a TPU pod slice or GPU nodes. Checked:

* every process sees 8 devices, 4 of them local, and both train in lockstep
  (identical losses) with the result of 1 process x 8 devices, for the pmap
  and shard_map backends, with BatchNorm statistics averaged across processes;
* a full `campaign.run` (2 methods, 2 levels, 2 replicas, warm-up, mid-level
  saves) gives the same result rows on both processes and as 1 process x 8
  devices; only process 0 writes results.csv and TensorBoard; the
  checkpoints process 0 commits are restored by both on a second run;
* with `shard_train_data`, each process holds only half of the training set
  on its devices, and the campaign still equals 1 process x 8 devices.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import xla_env

HERE = os.path.dirname(__file__)
WORKER = os.path.join(HERE, "multihost_worker.py")
RTOL = 1e-5  # the all-reduce sums in another order than one process does


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu",
                XLA_FLAGS=xla_env.flags(devices))


def _result(stdout: str, stderr: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _run_both(argv_of, env_of=lambda i: {}, cwd=None) -> list[tuple[int, str, str]]:
    """Run process 0 and 1 together (4 devices each): [(returncode, stdout, stderr)].

    `argv_of(i)` and `env_of(i)` give process i's command and extra environment.
    Their output goes to files, not pipes: a process blocked on a full pipe that
    nobody drains yet (the other one's is read first) would stall both at the
    runtime's shutdown barrier.
    """
    with tempfile.TemporaryDirectory() as tmp:
        files = [(open(os.path.join(tmp, f"out{i}"), "w+"),
                  open(os.path.join(tmp, f"err{i}"), "w+")) for i in range(2)]
        procs = [subprocess.Popen(argv_of(i), cwd=cwd, env=dict(_env(4), **env_of(i)),
                                  stdout=files[i][0], stderr=files[i][1], text=True)
                 for i in range(2)]
        try:
            for p in procs:
                p.wait(timeout=600)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        outs = []
        for out, err in files:
            out.seek(0), err.seek(0)
            outs.append((out.read(), err.read()))
            out.close(), err.close()
    return [(p.returncode, *out) for p, out in zip(procs, outs)]


def _two_processes(workdir: str, *extra: str) -> list[dict]:
    port = _free_port()
    outs = []
    for code, stdout, stderr in _run_both(
            lambda i: [sys.executable, WORKER, str(i), "2", str(port), workdir, *extra]):
        assert code == 0, stderr[-3000:]
        outs.append(_result(stdout, stderr))
    return outs


def _numbers(rows: dict) -> np.ndarray:
    return np.array([[r["density"], r["test_acc"], r["train_loss"]]
                     for m in sorted(rows) for r in rows[m]])


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    one = subprocess.run([sys.executable, WORKER, "0", "1", "0", str(tmp_path / "one")],
                         env=_env(8), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    reference = _result(one.stdout, one.stderr)
    assert (reference["process_count"], reference["devices"]) == (1, 8)

    two = _two_processes(str(tmp_path / "two"))
    for i, out in enumerate(two):
        assert (out["process_index"], out["process_count"]) == (i, 2)
        assert (out["devices"], out["local_devices"]) == (8, 4)
    # Lockstep: both processes read the same replicated outputs.
    assert two[0]["trajectories"] == two[1]["trajectories"]
    assert two[0]["rows"] == two[1]["rows"]
    for kind, losses in reference["trajectories"].items():
        assert len(losses) == 6  # 3 epochs x 2 replicas
        assert np.mean(losses[-2:]) < np.mean(losses[:2])  # it trains
        np.testing.assert_allclose(two[0]["trajectories"][kind], losses, rtol=RTOL,
                                   err_msg=kind)
    np.testing.assert_allclose(_numbers(two[0]["rows"]), _numbers(reference["rows"]),
                               rtol=1e-4, atol=1e-6)

    # Sharded data: each process holds half of the training set, and the run
    # equals 1 process x 8 devices with the same shards.
    n = reference["sharded_global_shape"][0] * reference["sharded_global_shape"][1]
    assert reference["sharded_global_shape"][0] == 8
    assert reference["sharded_local_examples"] == n
    for out in two:
        assert out["sharded_global_shape"] == reference["sharded_global_shape"]
        assert out["sharded_local_examples"] == n // 2
    assert two[0]["sharded_rows"] == two[1]["sharded_rows"]
    assert min(r["test_acc"] for r in two[0]["sharded_rows"]) > 0.5  # digits: it learns
    np.testing.assert_allclose(_numbers({"lrr": two[0]["sharded_rows"]}),
                               _numbers({"lrr": reference["sharded_rows"]}),
                               rtol=1e-4, atol=1e-6)

    # Streamed: each process reads only its devices' share of every batch, and the
    # run equals 1 process x 8 devices.
    ref_plans = reference["stream_plans"]  # per epoch: (steps, 8 devices, streams, local)
    assert len(ref_plans) == len(two[0]["stream_plans"]) == len(two[1]["stream_plans"]) > 0
    for k, full in enumerate(ref_plans):
        full = np.asarray(full)
        halves = [np.asarray(out["stream_plans"][k]) for out in two]
        assert [h.shape[1] for h in halves] == [4, 4] and full.shape[1] == 8
        for i, h in enumerate(halves):  # process i: devices 4i..4i+3 of each batch
            assert np.array_equal(h, full[:, 4 * i:4 * i + 4])
    for out in two:  # it read exactly its plans' examples, no more
        planned = sorted(np.concatenate([np.asarray(p).reshape(-1)
                                         for p in out["stream_plans"]]).tolist())
        assert out["stream_reads"] == planned
    assert sorted(two[0]["stream_reads"] + two[1]["stream_reads"]) == reference["stream_reads"]
    assert two[0]["stream_rows"] == two[1]["stream_rows"]
    np.testing.assert_allclose(_numbers(two[0]["stream_rows"]),
                               _numbers(reference["stream_rows"]), rtol=1e-4, atol=1e-6)
    # ... and trains what the on-device pipeline trains (the same batches).
    np.testing.assert_allclose(_numbers(two[0]["stream_rows"]), _numbers(two[0]["rows"]),
                               rtol=1e-4, atol=1e-6)

    run = tmp_path / "two" / "lrr"
    assert {"results.csv", "sign_flips.csv", "config.json", "checkpoints"} <= set(
        two[0]["files"])
    assert len(os.listdir(run / "tb")) == 1  # one TensorBoard writer: process 0
    assert (run / "checkpoints" / "level_001" / "commit_success.txt").is_file()

    # A second run finds every level committed: both processes restore the
    # checkpoints process 0 wrote and report the same rows without training.
    again = _two_processes(str(tmp_path / "two"), "driver-only")
    assert again[0]["rows"] == again[1]["rows"] == two[0]["rows"]
    assert again[0]["sharded_rows"] == two[0]["sharded_rows"]


MAIN_TINY = ["--config=configs/quickstart.py", "--config.dataset=digits", "--config.methods=lrr",
             "--config.levels=2", "--config.epochs_per_level=1", "--config.warmup_epochs=0",
             "--config.batch_size=64", "--config.num_replicas=1", "--config.progress=False"]


def _launch_main(workdir, *extra, faults=("", "")) -> list[tuple[int, str, str]]:
    """`python -m lrr_jax.main` as 2 processes x 4 devices: [(returncode, stdout, stderr)]."""
    port = _free_port()
    return _run_both(
        lambda i: [sys.executable, "-m", "lrr_jax.main", f"--workdir={workdir}", *MAIN_TINY,
                   *extra, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                   f"--process_id={i}"],
        lambda i: {"LRR_JAX_FAULT": faults[i]}, cwd=os.path.dirname(HERE))


TWO_EPOCHS = "--config.epochs_per_level=2"


@pytest.fixture(scope="module")
def whole_two_process_run(tmp_path_factory):
    """An uninterrupted `python -m lrr_jax.main` run as 2 processes (2 epochs per level):
    (workdir, [(returncode, stdout, stderr)]); the SIGTERM test's reference too."""
    workdir = tmp_path_factory.mktemp("whole")
    return workdir, _launch_main(workdir, TWO_EPOCHS)


@pytest.mark.slow
def test_main_flags_start_a_two_process_run(whole_two_process_run):
    # The entry point users launch on every host: `--coordinator_address`,
    # `--num_processes`, `--process_id` reach jax.distributed before any device is used.
    workdir, runs = whole_two_process_run
    for code, _, stderr in runs:
        assert code == 0, stderr[-3000:]
    outs = [(stdout, stderr) for _, stdout, stderr in runs]
    with open(workdir / "lrr" / "results.csv") as f:
        rows = f.read().splitlines()
    assert len(rows) == 1 + 2  # header + 2 levels x 1 replica, written once (process 0)
    assert "lrr (%)" in outs[0][0] and "lrr (%)" not in outs[1][0]  # process 0 prints the table


def test_incomplete_distributed_flags_are_a_one_line_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lrr_jax.main", f"--workdir={tmp_path}", *MAIN_TINY,
         "--coordinator_address=127.0.0.1:1", "--num_processes=2"],
        cwd=os.path.dirname(HERE), env=_env(1), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "coordinator_address" in lines[0] and "process_id" in lines[0]
    assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.slow
def test_sigterm_at_one_process_stops_both_and_the_run_resumes(tmp_path, whole_two_process_run):
    # A preemption notice that reaches only process 1 (which writes nothing):
    # both processes agree to stop after the same epoch, process 0 saves it,
    # both exit 143, and the relaunch finishes with the uninterrupted result.
    from lrr_jax import checkpoints

    runs = _launch_main(tmp_path / "cut", TWO_EPOCHS, faults=("", "in_epoch:1:0@term"))
    for code, _, stderr in runs:
        assert code == 143, stderr[-3000:]
    mid = tmp_path / "cut" / "lrr" / "checkpoints" / checkpoints.mid_name(1, 0)
    assert (mid / "commit_success.txt").is_file()
    for code, _, stderr in _launch_main(tmp_path / "cut", TWO_EPOCHS):
        assert code == 0, stderr[-3000:]
    whole, whole_runs = whole_two_process_run
    for code, _, stderr in whole_runs:
        assert code == 0, stderr[-3000:]
    with open(tmp_path / "cut" / "lrr" / "results.csv") as a, \
            open(whole / "lrr" / "results.csv") as b:
        assert a.read() == b.read()
