"""`--config.compile_for=tpu:TOPOLOGY`: a run's programs compiled by the TPU compiler, here.

libtpu (installed by the `test` extra) compiles for the compile-only devices of
a TPU topology on this CPU-only host. The first tests compile the level epoch
of the narrow ResNet18 (`configs/cifar10_small.py`) for a single-host v5e and
the two-host v4:2x2x2, with both backends, and hold the TPU compiler's memory
figures against what XLA:CPU reports for the same program (whose argument
sizes are exactly the state's and the data's). The others check the search
for the replica capacity, the projection's arithmetic and the refusals, with
the compiler's figures replaced by known ones, and one refusal through the
entry point.
"""

import importlib.util
import os
import subprocess
import sys

import jax
import pytest

from lrr_jax import plan, tpu_compile, validation
from lrr_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from configs import cifar10_small  # noqa: E402

if sys.platform == "linux" and importlib.util.find_spec("libtpu") is None:
    pytest.fail("libtpu is missing: pip install -e '.[test]' installs it (jax[tpu])",
                pytrace=False)
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="libtpu is built for Linux")

# 512 training examples at batch 64: 8 steps; the step is what is compiled.
SHAPES = tpu_compile.Shapes(n_train=512, n_test=256, shape=(32, 32, 3), test_shape=(32, 32, 3),
                            classes=10, image=True, source="test")
TOPOLOGIES = {"tpu:v5e:2x2": (4, 1), "tpu:v4:2x2x2": (8, 2)}  # chips, hosts


def narrow(**overrides):
    c = cifar10_small.get_config()
    c.methods = "lrr"
    c.update(overrides)
    return c


def exact_data_bytes(k: int = 1) -> int:
    """The epoch's data arguments: uint8 images, int32 labels, one uint32 key pair per replica."""
    return SHAPES.n_train * 32 * 32 * 3 + SHAPES.n_train * 4 + k * 2 * 4


@pytest.fixture(scope="module")
def on_cpu():
    """The same level epoch compiled by XLA:CPU on one device: its exact argument sizes."""
    progs = tpu_compile.Programs(narrow(parallel="shard_map"), jax.devices("cpu")[:1], SHAPES)
    return progs.compile("level", 1), progs.state_bytes(1)


@pytest.mark.parametrize("target", sorted(TOPOLOGIES))
@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
def test_narrow_level_epoch_compiles_for_the_tpu(target, parallel, on_cpu):
    cpu, state = on_cpu
    devices = tpu_compile.topology(target)
    chips, hosts = TOPOLOGIES[target]
    assert len(devices) == chips and len({d.process_index for d in devices}) == hosts
    assert all(d.platform == "tpu" for d in devices)
    progs = tpu_compile.Programs(narrow(parallel=parallel), devices, SHAPES)
    tpu = progs.compile("level", 1)
    assert not tpu.refused and tpu.seconds > 0
    # XLA:CPU: the arguments are the state and the data, byte for byte, and the
    # donated state is what the outputs write into.
    assert progs.state_bytes(1) == state
    assert cpu.arguments == state + exact_data_bytes()
    assert cpu.aliased == state
    # The TPU compiler: the same data (uint8 images, labels, keys; tiles pad a few KiB at
    # most) and the state as laid out on the chip: the narrow net's 4-32 channels fill
    # only part of the TPU's (8, 128) tiles, so it takes several times its bytes.
    assert abs((tpu.arguments - tpu.aliased) - exact_data_bytes()) <= 16 * 1024
    assert state < tpu.aliased < 8 * state
    assert tpu.outputs >= tpu.aliased and tpu.temporaries > 0 and tpu.code > 0
    # FLOPs of one scanned step per chip: the CPU's step (the whole batch of 64 on one
    # device) divided over the chips.
    assert tpu.flops == pytest.approx(cpu.flops / chips, rel=0.05)


STREAM = tpu_compile.Shapes(n_train=4096, n_test=512, shape=(64, 64, 3), test_shape=(64, 64, 3),
                            classes=1000, image=True, source="test", stream=True)


def narrow_imagenet(**overrides):
    from configs import imagenet

    c = imagenet.get_config()
    # A narrow CIFAR ResNet18 for the paper's ResNet-50: the streamed step is the point,
    # and it compiles in three quarters of the time.
    c.update({"methods": "lrr", "model": "resnet18", "width": 0.0625, "image_size": 64,
              "batch_size": 64, **overrides})
    return c


def exact_step_bytes(local: int, k: int = 1) -> int:
    """One streamed step's arguments on a chip besides the state: its block of the batch
    (uint8 images, int32 labels), the metric sums (loss, acc per replica) and each
    replica's stream index. The epoch keys and the step index place on-device
    augmentation; ImageNet's ran on the host, so the compilers drop them as unused."""
    return local * 64 * 64 * 3 + local * 4 + 2 * k * 4 + k * 4


def test_streamed_imagenet_step_compiles_for_the_tpu():
    """input_pipeline='stream' (ImageNet): the compiled program is one step taking its batch
    as an argument; nothing of the split is resident, and the step's FLOPs are the CPU's
    over the chips. pmap on the two-host v4:2x2x2: each host lowers its own blocks."""
    cpu_progs = tpu_compile.Programs(narrow_imagenet(parallel="shard_map"),
                                     jax.devices("cpu")[:1], STREAM)
    cpu = cpu_progs.compile("level", 1)
    state = cpu_progs.state_bytes(1)
    assert cpu.arguments == state + exact_step_bytes(local=64)
    progs = tpu_compile.Programs(narrow_imagenet(parallel="pmap"),
                                 tpu_compile.topology("tpu:v4:2x2x2"), STREAM)
    tpu = progs.compile("level", 1)
    assert not tpu.refused and progs.steps_per_epoch == 4096 // 64
    # The chip's layout of the step's arguments: the uint8 (8, 64, 64, 3) block padded to
    # the TPU's tiles, about twice its bytes (v5e, 16 per chip: 395,264 for 196,684).
    step_args = tpu.arguments - tpu.aliased
    assert exact_step_bytes(local=8) <= step_args <= 2.5 * exact_step_bytes(local=8)
    assert tpu.flops == pytest.approx(cpu.flops / 8, rel=0.05)
    ev = progs.compile("eval", 1)
    assert not ev.refused and ev.flops > 0
    resident = progs.resident(1)  # two steps' batches and two evaluation blocks, no split
    assert resident["train"] == 2 * step_args
    assert resident["test"] == 2 * progs.data["eval_batch"] * (64 * 64 * 3 + 4 + 4)
    assert progs.data["eval_batches"] == -(-512 // (8 * progs.data["eval_batch"]))


class Linear:
    """Stand-in for `Programs.peak`: bytes linear (or not) in the replica count."""

    def __init__(self, peak):
        self.peak_of, self.asked = peak, []

    def peak(self, k, others=0, say=None):
        self.asked.append(k)
        # The compiler refuses a program above its limit, stating what it needs.
        return {"peak": self.peak_of(k), "refused": self.peak_of(k) > self.limit,
                "usable": True, "binding": "level"}


def _flat_then_linear(k):  # v5p, CIFAR-10: 2 replicas take hardly more than 1 (XLA reuses
    return (2.25 + 0.05 * (k == 2)) * 2**30 if k <= 2 else 0.85 * k * 2**30  # buffers)


@pytest.mark.parametrize("peak", [lambda k: (1 + 0.5 * k) * 2**30,  # linear: 29 fit
                                  lambda k: (1 + 0.3 * k + 0.02 * k * k) * 2**30,  # not linear
                                  _flat_then_linear],  # the line through 1, 2 overshoots
                         ids=["linear", "superlinear", "flat_start"])
def test_replica_capacity_is_the_largest_count_that_fits(peak):
    limit = (95.74 if peak is _flat_then_linear else 15.75) * 2**30
    progs, lines = Linear(peak), []
    progs.limit = limit
    cap = tpu_compile.capacity(progs, limit, {}, lines.append)
    best = max(k for k in range(1, 600) if peak(k) <= limit)
    assert cap["replicas"] == best and cap["proven"]
    assert best + 1 in progs.asked and len(progs.asked) <= 8  # not a scan of every count
    assert all(line.startswith("replica capacity: the line through") for line in lines)
    if len(lines) == 1:  # the line's prediction was right: 1, 2, then it and the one above
        assert progs.asked == [1, 2, best, best + 1]


def fake_compiler(temp_per_replica: int, flops: float, eval_flops: float):
    """A `compile_program` with known figures: exact argument sizes, linear temporaries."""

    def compile_program(name, k, lowerable, args):
        arguments = tpu_compile._nbytes(args)
        aliased = tpu_compile._nbytes(args[0]) if name in ("warmup", "level") else 0
        temporaries = {"warmup": k * temp_per_replica, "level": k * temp_per_replica,
                       "eval": k * 2**20}.get(name, 0)
        per_step = {"level": 1.0, "warmup": 1.0, "eval": 0.1}.get(name, 0.0) * k
        return tpu_compile.Compiled(name, k, 1.0, arguments=arguments, temporaries=temporaries,
                                    outputs=aliased, aliased=aliased, code=2**20,
                                    flops={"level": flops, "warmup": flops,
                                           "eval": eval_flops}.get(name, 0.0) * k,
                                    bytes_accessed=per_step * 1e12)

    return compile_program


def test_dry_run_prints_memory_capacity_flops_and_a_labelled_projection(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(tpu_compile, "compile_program", fake_compiler(gib, 1e15, 1e14))
    c = narrow(compile_for="tpu:v5e:2x2", dry_run=True, train_limit=1024, test_limit=500)
    progress = []
    result = tpu_compile.describe(c, plan.layout(c), progress.append)  # in this process
    out = tpu_compile.render(result)
    assert progress[0].startswith("compiling for v5e:2x2 (4 x TPU v5 lite, compile-only")
    limit = result["hbm"]["limit"]
    assert limit == int(15.75 * gib)  # the v5e compiler's own figure, probed
    # Per chip: state + data + keys (exact here) + temporaries + code, with the test split.
    progs = tpu_compile.Programs(c, tpu_compile.topology("tpu:v5e:2x2"), tpu_compile.Shapes(
        1024, 500, (32, 32, 3), (32, 32, 3), 10, True, ""))
    test = progs.data["bytes"]["test"]
    train = 1024 * 3072 + 1024 * 4

    state = progs.state_bytes(1)  # every leaf of the state has the replica axis in front

    def peak(k):
        return k * state + train + 8 * k + k * gib + 2**20 + test

    assert result["memory_per_chip"]["one_replica"]["peak"] == peak(1)
    assert result["capacity"]["replicas"] == max(k for k in range(1, 64) if peak(k) <= limit)
    # 16 steps per epoch; 1 warm-up + 6 levels x 3 epochs; 6 x 3 evaluations of 1 batch per chip.
    expected = (16 * 19 * 1e15 + 18 * 1e14) / (197e12 * 0.4)
    traffic = (16 * 19 * 1e12 + 18 * 1e11) / 819e9  # bytes accessed at the HBM bandwidth
    assert result["projected_seconds"]["total"] == pytest.approx(expected, rel=1e-9)
    assert result["projected_seconds"]["memory"] == pytest.approx(traffic, rel=1e-9)
    line = next(x for x in out if x.startswith("projected"))
    assert line.startswith(f"projected (an assumption, not a measurement): {expected / 3600:.1f} h")
    assert "ASSUMING 40% of the TPU v5e's published peak 197 TFLOP/s bfloat16" in line
    assert any(x.startswith("peak per chip: ") and x.endswith("fits") for x in out)
    assert any(x.startswith("HBM per chip: 16 GB published (https://cloud.google.com/tpu/docs/v5e"
                            "); 15.75 GiB available to a program") for x in out)


def test_streamed_dry_run_counts_steps_and_batches_not_the_split(monkeypatch):
    """ImageNet's dry run (streamed): the projection counts steps of the streamed epoch and
    evaluation batches, and the lines say what is on the chips (batches, not the split)."""
    monkeypatch.setattr(tpu_compile, "compile_program", fake_compiler(2**30, 1e15, 1e14))
    c = narrow_imagenet(compile_for="tpu:v5e:2x2", dry_run=True, levels=2, epochs_per_level=3,
                        warmup_epochs=1)
    lay = plan.layout(c)  # ImageNet is not prepared here: its standard sizes
    assert lay["input_pipeline"] == "stream" and lay["dataset"]["train"] == 1281167
    result = tpu_compile.describe(c, lay, lambda line: None)
    out = "\n".join(tpu_compile.render(result))
    steps = 1281167 // 64
    assert c.eval_every_epochs == 5  # ImageNet's: a 3-epoch level evaluates once, at its end
    evals = 2 * 1 * -(-50000 // (4 * 1000))  # levels x evaluations x batches of 4 x 1000
    expected = (steps * 7 * 1e15 + evals * 1e14) / (197e12 * 0.4)
    assert result["projected_seconds"]["total"] == pytest.approx(expected, rel=1e-9)
    assert "two steps' batches" in out and "streamed: the split stays on the hosts" in out
    assert "cost_analysis of the streamed step" in out and "training split" not in out
    mem = result["memory_per_chip"]["one_replica"]
    # Two steps' non-state arguments (the fake compiler counts the global batch of 64):
    # images, labels, the sums, the key pair, the step and the stream index.
    assert mem["resident_train"] == 2 * (64 * 64 * 64 * 3 + 64 * 4 + 2 * 4 + 2 * 4 + 4 + 4)


@pytest.mark.parametrize("overrides,key", [
    ({}, "batch_size"),  # one replica's activations alone exceed the chip
    ({"num_replicas": 4}, "replica_batch"),  # 4 in one program do not fit; 2 per program do
])
def test_a_compiled_program_that_does_not_fit_names_the_key(monkeypatch, overrides, key):
    monkeypatch.setattr(tpu_compile, "compile_program",
                        fake_compiler(6 * 2**30 if overrides else 20 * 2**30, 1e9, 1e9))
    c = narrow(compile_for="tpu:v5e:2x2", dry_run=True, train_limit=1024, test_limit=500,
               **overrides)
    with pytest.raises(ConfigError) as e:
        tpu_compile.describe(c, plan.layout(c), print)
    assert e.value.key == key
    message = str(e.value)
    assert "GiB per TPU v5e chip" in message and "the compiler allows 15.75 GiB" in message
    if key == "replica_batch":
        assert "--config.replica_batch=2 fits" in message


def test_a_config_that_cannot_fit_is_refused_before_compiling(tmp_path):
    # 64 ResNet50 replicas: their parameters, masks and momenta alone exceed a v5e chip.
    out = subprocess.run(
        [sys.executable, "-m", "lrr_jax.main", "--config=configs/cifar100.py",
         f"--workdir={tmp_path / 'w'}", "--config.dry_run=True", "--config.num_replicas=64",
         "--config.compile_for=tpu:v5e:2x2"], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: num_replicas: the data ")
    per_replica = 3 * 23_652_032 * 4 / 2**30  # params, mask, momentum of the prunable kernels
    fit = int(lines[0].split("at most ")[1].split()[0])
    assert fit == pytest.approx(15.75 / per_replica, rel=0.1) and fit < 64
    assert "compiling" not in out.stdout  # refused before any compile
    assert not (tmp_path / "w").exists()


def test_a_crash_of_the_compiler_is_one_line_naming_the_program(tmp_path):
    # The compile runs in a child process (libtpu 0.0.42.1 crashes compiling the full-width
    # ResNet step for v6e); here the child is killed as it starts the level epoch.
    out = subprocess.run(
        [sys.executable, "-m", "lrr_jax.main", "--config=configs/cifar10_small.py",
         f"--workdir={tmp_path / 'w'}", "--config.dry_run=True", "--config.methods=lrr",
         "--config.compile_for=tpu:v5e:2x2"], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu",
                              LRR_JAX_FAULT="compiling:level:1"))
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: compile_for: the TPU compiler (libtpu ")
    assert ") crashed (signal SIGKILL) compiling the level epoch of 1 replica(s) for v5e:2x2: " \
        "a failure of the compiler, not a figure of the config" in lines[0]
    assert "compiling for v5e:2x2" in out.stdout  # the child's progress came through


@pytest.mark.parametrize("overrides,fragment", [
    ({"compile_for": "v5e:2x2", "dry_run": True}, "expected 'tpu:TOPOLOGY'"),
    ({"compile_for": "gpu:h100", "dry_run": True}, "scripts/gpu_check.sh"),
    ({"compile_for": "tpu:v5e:2x2"}, "add --config.dry_run=True"),
])
def test_compile_for_is_validated(overrides, fragment):
    with pytest.raises(ConfigError) as e:
        validation.validate(narrow(**overrides))
    assert e.value.key == "compile_for" and fragment in str(e.value)


def test_an_unknown_topology_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        tpu_compile.topology("tpu:v5e:3x7")
    assert e.value.key == "compile_for" and "v5e:3x7" in str(e.value)


@pytest.mark.parametrize("generation,topology", [("v4", "v4:2x2x1"), ("v5e", "v5e:2x2"),
                                                 ("v5p", "v5p:2x2x1"), ("v6e", "v6e:2x2")])
def test_the_compilers_hbm_is_the_published_capacity(generation, topology):
    # Google Cloud's figure (tpu_compile.CHIPS cites the page) against the limit the TPU
    # compiler states for one program: the runtime keeps a few percent.
    device = tpu_compile.topology(f"tpu:{topology}")[0]
    limit = tpu_compile.compiler_hbm_limit(device)
    chip = tpu_compile.CHIPS[generation]
    assert limit == pytest.approx(chip.hbm_bytes, rel=0.05)
