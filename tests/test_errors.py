"""Bad input: one line naming the key or file, exit status 2, no traceback, nothing compiled.

A representative few go through `python -m lrr_jax.main` in a subprocess (the
exact stderr and status users see); the rest call `validation.validate` and
`workdir.check_sources` in-process, which `campaign.run` calls before loading data
or compiling anything. RELIABILITY.md lists every message.
"""

import csv
import os
import subprocess
import sys
import time

import pytest
import unprivileged
import xla_env

from lrr_jax import config_base, validation, workdir
from lrr_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--config=configs/quickstart.py", "--config.methods=lrr", "--config.num_replicas=1",
         "--config.progress=False", "--config.tensorboard=False"]


def quick(**overrides):
    sys.path.insert(0, os.path.join(REPO, "configs"))
    import quickstart

    c = quickstart.get_config()
    c.methods = ""
    c.method = "lrr"
    c.update(overrides)
    return c


def main(workdir, *overrides, env=None, timeout=300, prefix=()):
    e = dict(os.environ, JAX_PLATFORMS="cpu")
    e["XLA_FLAGS"] = xla_env.flags()
    e.update(env or {})
    start = time.time()
    out = subprocess.run([*prefix, sys.executable, "-m", "lrr_jax.main", *QUICK,
                          f"--workdir={workdir}", *overrides], cwd=REPO, capture_output=True,
                         text=True,
                         timeout=timeout, env=e)
    return out, time.time() - start


def one_line(out) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ---- in-process: validation.validate ---------------------------------------------------------
BAD = [
    ({"method": "sgd"}, "method", "unknown method 'sgd'"),
    ({"methods": "imp,lrr,foo"}, "methods", "unknown method 'foo'"),
    ({"model": "vgg11"}, "model", "unknown model 'vgg11'"),
    ({"dataset": "imagenet"}, "dataset", "unknown dataset 'imagenet'"),
    ({"prune_fraction": 0.0}, "prune_fraction", "must be in (0, 1), got 0.0"),
    ({"prune_fraction": 1.0}, "prune_fraction", "must be in (0, 1), got 1.0"),
    ({"prune_fraction": -0.2}, "prune_fraction", "must be in (0, 1)"),
    ({"prune_fraction": 1.5}, "prune_fraction", "must be in (0, 1)"),
    ({"levels": 0}, "levels", "must be >= 1, got 0"),
    ({"levels": -3}, "levels", "must be >= 1"),
    ({"method": "wr", "warmup_epochs": 12, "epochs_per_level": 10}, "warmup_epochs",
     "wr rewinds to the end of the 12-epoch warm-up, beyond the 10 epochs of a level"),
    ({"methods": "imp,lrr_bn_rewind", "warmup_epochs": 3, "epochs_per_level": 2},
     "warmup_epochs", "lrr_bn_rewind rewinds"),
    ({"lr": -0.1}, "lr", "must be >= 0, got -0.1"),
    ({"lr": 0.0}, "lr", "must be > 0"),
    ({"lr": float("nan")}, "lr", "must be >= 0, got nan"),
    ({"weight_decay": -1e-4}, "weight_decay", "must be >= 0, got -0.0001"),
    ({"lr_min": -0.01}, "lr_min", "must be >= 0"),
    ({"epochs_per_level": 0}, "epochs_per_level", "must be >= 1"),
    ({"batch_size": 0}, "batch_size", "must be >= 1"),
]


@pytest.mark.parametrize("overrides,key,fragment", BAD,
                         ids=[f"{k}={list(o.values())[-1]}" for o, k, _ in BAD])
def test_validate_names_the_key(overrides, key, fragment):
    with pytest.raises(ConfigError) as e:
        validation.validate(quick(**overrides))
    assert e.value.key == key
    assert str(e.value).startswith(f"{key}: ")
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides", [
    {"method": "wr", "warmup_epochs": 10, "epochs_per_level": 10},  # may end a level
    {"method": "imp", "warmup_epochs": 12, "epochs_per_level": 10},  # IMP rewinds to theta_0
    {"method": "lrr", "warmup_epochs": 12, "epochs_per_level": 10},  # LRR rewinds no weights
])
def test_validate_accepts(overrides):
    validation.validate(quick(**overrides))


# ---- in-process: transfer sources ---------------------------------------------------------------
def test_missing_transfer_source(tmp_path):
    c = quick(mask_source=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"^mask_source: .*nowhere is not a run directory"):
        workdir.check_sources(c, ["lrr"])


def test_transfer_source_of_another_shape(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(quick(mlp_hidden=(128, 128)).to_json())
    c = quick(mask_source=str(source))
    with pytest.raises(ConfigError) as e:
        workdir.check_sources(c, ["lrr"])
    assert str(e.value) == (f"mask_source: {source} was run with mlp_hidden=[128, 128], this "
                            "run uses (256, 256)")
    (source / "config.json").write_text(quick(width=0.5).to_json())
    with pytest.raises(ConfigError, match="was run with width=0.5"):
        workdir.check_sources(c, ["lrr"])


def test_transfer_source_without_enough_levels(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(quick().to_json())
    with pytest.raises(ConfigError, match="has 0 finished levels, this run needs 15"):
        workdir.check_sources(quick(mask_source=str(source)), ["lrr"])


# ---- through main, in a subprocess ------------------------------------------------------------
def test_unknown_method_one_line_exit_2(tmp_path):
    out, _ = main(tmp_path / "w", "--config.methods=lrr,sgd")
    assert one_line(out) == ("error: methods: unknown method 'sgd'; expected one of "
                             "('imp', 'wr', 'lrr', 'lrr_bn_rewind'), or TARGET@SOURCE (e.g. "
                             "lrr@imp: LRR on the masks of this run's IMP replicas)")
    assert not (tmp_path / "w").exists()  # refused before touching the workdir


def test_verbosity_shows_the_traceback(tmp_path):
    out, _ = main(tmp_path / "w", "--config.prune_fraction=1.5", "--verbosity=1")
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "prune_fraction: must be in (0, 1)" in out.stderr


def test_unknown_config_key_one_line(tmp_path):
    out, _ = main(tmp_path / "w", "--config.levls=3")
    assert one_line(out) == ("error: config: --config.levls: no such config key 'levls' "
                             "(Did you mean \"levels\" instead of \"levls\"?)")


def test_missing_config_file_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lrr_jax.main", "--config=configs/nope.py",
                          f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert one_line(out) == "error: config: configs/nope.py: no such file"


def test_batch_size_not_divisible_by_device_count(tmp_path):
    out, _ = main(tmp_path / "w", "--config.batch_size=100",
                  env={"XLA_FLAGS": xla_env.flags(8)})
    assert one_line(out) == "error: batch_size: 100 is not divisible by the 8 devices"
    # Refused before the run started: no config.json, no checkpoints, and the
    # workdir the run would have created is not left behind holding only .lock.
    assert not (tmp_path / "w").exists()


def test_dataset_not_prepared_says_how_and_does_not_wait(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    out, seconds = main(tmp_path / "w", "--config.dataset=cifar10", "--config.model=resnet18",
                        f"--config.data_dir={empty}")
    line = one_line(out)
    assert line.startswith(f"error: dataset: cifar10 is not prepared in {empty}")
    assert "python -m lrr_jax.data.prepare --dataset=cifar10" in line
    assert seconds < 60  # no network wait (typically ~4 s, mostly imports)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_and_lists_every_config_key_by_section(flag):
    from lrr_jax import keys

    out = subprocess.run([sys.executable, "-m", "lrr_jax.main", flag], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for key, value in config_base.get_base_config().items():
        assert f"\n  {key} = {value!r}\n      " in text, key
    listing = text[text.index("\nConfig keys"):].splitlines()[2:]
    sections = [line[:-1] for line in listing if line and not line.startswith(" ")]
    assert sections[:4] == ["General", "Data", "Model", "Pruning schedule"]
    assert "Execution" in sections
    assert keys.missing_help() == []  # every key has its line of help in config_base.py
    assert "--workdir" in text and "143" in text  # the flags and the exit statuses


def test_refused_run_leaves_no_workdir_holding_only_the_lock(tmp_path):
    # Refused inside the lock (the transfer source is checked after the lock is taken).
    out, _ = main(tmp_path / "w", f"--config.mask_source={tmp_path / 'nowhere'}")
    assert one_line(out).startswith("error: mask_source: ") and out.returncode == 2
    assert not (tmp_path / "w").exists()
    keep = tmp_path / "mine"  # a directory that existed before is never removed
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    out, _ = main(keep, f"--config.mask_source={tmp_path / 'nowhere'}")
    assert out.returncode == 2 and (keep / "notes.txt").read_text() == "x"


def test_tilde_in_workdir_and_source_keys_is_expanded(tmp_path):
    home = tmp_path / "home"
    (home / "w").mkdir(parents=True)
    out, _ = main("~/w", "--config.mask_source=~/nowhere", env={"HOME": str(home)})
    assert one_line(out) == (f"error: mask_source: {home / 'nowhere'} is not a run directory "
                             "(no config.json)")
    assert (home / "w" / ".lock").exists()  # the lock of ~/w was taken: the path was expanded
    assert not os.path.exists(os.path.join(REPO, "~"))


def test_workdir_that_is_a_file_or_below_one_is_one_line(tmp_path):
    f = tmp_path / "afile"
    f.write_text("mine")
    out, _ = main(f)
    assert one_line(out) == (f"error: workdir: {f} is a file, not a directory; pass a "
                             "directory this user can write")
    out, _ = main(f / "sub")
    assert one_line(out).startswith(f"error: workdir: {f / 'sub'} cannot be used as the workdir")
    assert f.read_text() == "mine"


def test_read_only_workdir_is_one_line_and_untouched(tmp_path):
    """A workdir without write permission (as root too: tests/unprivileged.py), or below one."""
    if unprivileged.prefix() is None:
        pytest.skip("cannot drop root's override of file permissions here")
    locked = tmp_path / "locked"
    (locked / "lrr").mkdir(parents=True)
    (locked / "lrr" / "results.csv").write_text("old\n")
    locked.chmod(0o555)
    try:
        for w in (locked, locked / "sub"):
            out, _ = main(w, prefix=unprivileged.prefix())
            assert one_line(out) == (f"error: workdir: {w} cannot be used as the workdir "
                                     "(Permission denied); pass a directory this user can write")
        assert sorted(os.listdir(locked)) == ["lrr"]
        assert (locked / "lrr" / "results.csv").read_text() == "old\n"
    finally:
        locked.chmod(0o755)


def test_transfer_source_of_other_seeds_refused_through_the_entry_point(tmp_path):
    """IMP with LRR's mask and signs from a seed-0 run, at --config.seed=5: refused naming
    `seed` (one init's magnitudes with another init's signs) unless explicitly allowed."""
    cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache"),
             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    small = ["--config.levels=2", "--config.epochs_per_level=1", "--config.warmup_epochs=1",
             "--config.train_limit=200", "--config.test_limit=100",
             "--config.eval_batch_size=100", "--config.mlp_hidden=(16,16)"]
    out, _ = main(tmp_path / "src", *small, env=cache)
    assert out.returncode == 0, out.stderr[-3000:]
    src = tmp_path / "src" / "lrr"
    transfer = [*small, "--config.methods=imp", f"--config.mask_source={src}",
                f"--config.sign_source={src}", "--config.sign_transfer=source_signs"]
    out, _ = main(tmp_path / "other_seed", *transfer, "--config.seed=5", env=cache)
    assert one_line(out) == (
        f"error: seed: mask_source {src} was run with seeds [0], this run uses [5]: its "
        "masks/signs belong to another initialization; use the same --config.seed, or "
        "--config.allow_source_seed_mismatch=True when that is the point")
    assert not (tmp_path / "other_seed").exists()
    for name, extra in (("allowed", ["--config.seed=5",
                                     "--config.allow_source_seed_mismatch=True"]),
                        ("same_seed", [])):
        out, _ = main(tmp_path / name, *transfer, *extra, env=cache)
        assert out.returncode == 0, out.stderr[-3000:]
        with open(tmp_path / name / "imp" / "results.csv") as f:
            rows = list(csv.DictReader(f))
        assert [(r["level"], r["seed"], r["mask_source"], r["sign_source"]) for r in rows] == [
            (str(lv), "5" if extra else "0", str(src), str(src)) for lv in (0, 1)]


# A run small enough to finish in seconds (one level of one epoch).
SMALL = ["--config.levels=1", "--config.epochs_per_level=1", "--config.warmup_epochs=0",
         "--config.mlp_hidden=(8,8)", "--config.test_limit=100", "--config.eval_batch_size=100"]


def test_run_refused_at_data_loading_writes_nothing(tmp_path):
    """Values refused when the data loads leave no config.json behind, so the corrected
    command is not refused as "a run of a different config"."""
    w = tmp_path / "w"
    out, _ = main(w, *SMALL, "--config.train_limit=-1")
    assert one_line(out) == "error: train_limit: must be >= 0 (0 = all), got -1"
    assert not w.exists()
    out, _ = main(w, *SMALL, "--config.train_limit=50", "--config.batch_size=100")
    assert one_line(out) == "error: batch_size: 100 exceeds the 50 training examples"
    assert not w.exists()
    out, _ = main(w, *SMALL, "--config.train_limit=200")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (w / "lrr" / "results.csv").exists()


def test_dry_run_refuses_what_the_run_refuses(tmp_path):
    """The dry run makes the real run's checks before compiling: the same one line."""
    too_big = [*SMALL, "--config.train_limit=50", "--config.batch_size=100"]
    other = tmp_path / "other"
    out, _ = main(other, *SMALL, "--config.train_limit=200", "--config.lr=0.05")
    assert out.returncode == 0, out.stderr[-3000:]
    config_json = (other / "lrr" / "config.json").read_text()
    for wd, flags, expected in (
            (tmp_path / "w", too_big, "error: batch_size: 100 exceeds the 50 training examples"),
            (other, [*SMALL, "--config.train_limit=200"],
             f"error: workdir: {other / 'lrr'} holds a run of a different config (recorded in "
             f"{other / 'lrr' / 'checkpoints' / 'init'}): lr (0.05 -> 0.1); use another "
             "--workdir or --config.overwrite=True")):
        lines = [one_line(main(wd, *flags, f"--config.dry_run={dry}")[0])
                 for dry in (True, False)]
        assert lines == [expected, expected]
    assert not (tmp_path / "w").exists()
    assert (other / "lrr" / "config.json").read_text() == config_json


def test_misspelled_key_in_a_config_file_is_refused_like_on_the_command_line(tmp_path):
    typo = tmp_path / "typo.py"
    typo.write_text("from configs import quickstart\n\n\ndef get_config():\n"
                    "    c = quickstart.get_config()\n    c.levells = 3\n    return c\n")
    out = subprocess.run([sys.executable, "-m", "lrr_jax.main", f"--config={typo}",
                          f"--workdir={tmp_path / 'w'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert one_line(out) == (f"error: config: {typo}: no such config key 'levells' (did you "
                             "mean 'levels'?)")
    assert not (tmp_path / "w").exists()
    c = quick()
    c.levells = 3  # through campaign.run (validate) as well
    with pytest.raises(ConfigError, match=r"^config: no such config key 'levells' \(did you "
                       r"mean 'levels'\?\)$"):
        validation.validate(c)
    c = quick()
    c.theory_dim = 5  # a key of another experiment
    with pytest.raises(ConfigError, match=r"^config: no such config key 'theory_dim' for "
                       r"experiment 'prune' \(it belongs to experiment 'single_neuron'\)$"):
        validation.validate(c)


SHIPPED = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "configs"))
                 if f.endswith(".py") and f != "__init__.py")
ARGUMENTS = {"transfer": "VARIANTS", "random_masks": "ALLOCATIONS"}  # every argument is loaded


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_has_only_known_keys(name):
    import importlib

    sys.path.insert(0, REPO)
    module = importlib.import_module(f"configs.{name}")
    for arg in getattr(module, ARGUMENTS[name]) if name in ARGUMENTS else [None]:
        c = module.get_config() if arg is None else module.get_config(arg)
        validation.check_keys(c, f"configs/{name}.py")


def test_method_on_the_command_line_of_a_multi_method_config_runs_just_that_method(tmp_path):
    """configs/quickstart.py sets methods=imp,wr,lrr; --config.method=wr runs WR alone (in
    <workdir>/wr, as --config.methods=wr); with --config.methods as well it is refused."""
    flags = [f for f in QUICK if not f.startswith("--config.methods")] + SMALL + [
        "--config.train_limit=200"]

    def run(workdir, *extra):
        return subprocess.run([sys.executable, "-m", "lrr_jax.main", *flags, *extra,
                               f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))

    out = run(tmp_path / "w", "--config.method=wr")
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "w")) == [".lock", "summary.txt", "wr"]
    with open(tmp_path / "w" / "wr" / "results.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["wr"]
    out = run(tmp_path / "both", "--config.method=wr", "--config.methods=imp,lrr")
    assert one_line(out) == ("error: method: --config.method=wr and --config.methods=imp,lrr "
                             "both given: pass one (--config.methods=wr runs wr alone)")


@pytest.mark.parametrize("argument,message", [
    ("configs/transfer.py:lrr_imp_msk", "unknown transfer variant 'lrr_imp_msk'; expected one "
     "of ['wr_lrr_mask', 'imp_lrr_mask', 'lrr_imp_mask', 'imp_lrr_signs', "
     "'imp_lrr_signs_shuffled', 'imp_lrr_signs_shuffled_in_mask', 'imp_own_signs', "
     "'lrr_init_signs']"),
    ("configs/transfer.py:wr_lrr_mask,cifar11", "no config configs/cifar11.py to take the "
     "settings from; expected one of quickstart, cifar10_small, cifar10, cifar100, "
     "tiny_imagenet"),
    ("configs/quickstart.py:foo", "configs/quickstart.py takes no argument, got 'foo'"),
])
def test_config_argument_typo_one_line(tmp_path, argument, message):
    out = subprocess.run([sys.executable, "-m", "lrr_jax.main", f"--config={argument}",
                          f"--workdir={tmp_path / 'w'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert one_line(out) == f"error: config: {argument}: {message}"


def test_help_lists_every_value_of_each_registry():
    """--help lists what each registry-checked key accepts, read from the registry itself:
    an entry added at run time (as a config file may add one) is listed too."""
    from lrr_jax import keys, pruning

    text = keys.describe()
    for key, values in keys.registries().items():
        block = text[text.index(f"  {key} = "):]
        line = next(row for row in block.splitlines()[1:] if row.startswith("      one of: "))
        assert line == "      one of: " + " | ".join(values), key
        assert values, key
    pruning.SCORES["toy_in_help"] = pruning.SCORES["magnitude"]
    try:
        assert "toy_in_help" in keys.describe()
    finally:
        del pruning.SCORES["toy_in_help"]
