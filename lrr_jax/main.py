"""Entry point: `python -m lrr_jax.main --config=configs/quickstart.py --workdir=/tmp/run`.

Any config field can be overridden, e.g. `--config.method=wr --config.levels=5`.
Running the same command again resumes: finished levels are kept, a level in
progress continues from its last mid-level save.

Exit status (each non-zero one comes with one line on stderr, `error: ...`
or `preempted ...`, and no traceback unless `--verbosity` is given):

- 0: finished.
- 1: an unexpected error (a bug); the traceback is printed.
- 2: bad input: a config value, a missing or wrong file, a dataset not
  prepared, the workdir (in use, another config), a damaged checkpoint.
  Found before anything is compiled; fix it and run again.
- 3: training diverged (NaN/inf loss); the last good checkpoint is kept.
- 4: a run-time invariant failed (`invariants`: wrong mask density, a mask
  grew, a bad rewind, pruned weights with an effect): a bug; the level is
  not saved.
- 143 (128 + SIGTERM): preempted; the state was saved (`preemption`). Run
  the same command to resume.
- 130 (128 + SIGINT): Ctrl-C, handled as SIGTERM: the level in progress is
  saved at the end of the epoch; a second Ctrl-C stops at once.

Without `--verbosity`, library logging below ERROR is silenced (orbax logs
every file it writes, TFDS warns about folders it looks into).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lrr_jax import campaign, distributed, epochs, invariants, preemption, validation
from lrr_jax.errors import ConfigError

FLAGS = flags.DEFINE_string("workdir", None, "Directory for checkpoints, results and logs.")
CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file.", lock_config=True)
distributed.define_flags()  # --distributed, --coordinator_address, --num_processes, --process_id

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INVARIANT = 4


def main(argv):
    if len(argv) > 1:
        _fail("argv", f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.value:
        _fail("workdir", "--workdir is required")
    verbose = flags.FLAGS["verbosity"].present
    if not verbose:
        logging.set_verbosity(logging.ERROR)
    try:
        config = CONFIG.value
        config.get("method")  # a config file that failed to load raises here
    except Exception as e:  # noqa: BLE001 - ml_collections defers load errors to first use
        if verbose:
            raise
        path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
        if not os.path.isfile(path):
            _fail("config", f"{path}: no such file")
        _fail("config", f"cannot load {path}: {_one_line(e)}")
    try:
        # A key the config file sets that is not a config key (the command line's are
        # refused by ml_collections): the file is named.
        validation.check_keys(config, config_flags.get_config_filename(flags.FLAGS["config"]))
        _one_method(config, config_flags.get_override_values(flags.FLAGS["config"]))
        distributed.initialize_from_flags()  # multi-host: before anything touches a device
        # After it: jax.distributed installs a SIGTERM handler of its own
        # (its preemption notifier), which would otherwise replace ours.
        if config.experiment == "prune":  # the level loop checks the flag; others run through
            preemption.install()
        campaign.run(config, FLAGS.value)
    except (ConfigError, epochs.TrainingDiverged, invariants.InvariantViolation,
            preemption.Preempted) as e:
        if verbose:
            raise
        message, status = _report(e)
        print(message, file=sys.stderr, flush=True)
        sys.exit(status)


def _one_method(config, overrides: dict) -> None:
    """`--config.method=M` for a config file that sets `methods` runs just M (methods=M).

    Both flags at once are refused: which one is meant is not clear.
    """
    if "method" not in overrides or not config.methods:
        return
    if "methods" in overrides:
        raise ConfigError("method", f"--config.method={config.method} and --config.methods="
                          f"{config.methods} both given: pass one (--config.methods="
                          f"{config.method} runs {config.method} alone)")
    config.methods = config.method


def _report(e: Exception) -> tuple[str, int]:
    """The one line and the exit status for an expected way of stopping."""
    if isinstance(e, ConfigError):
        return f"error: {_one_line(e)}", EXIT_BAD_INPUT
    if isinstance(e, epochs.TrainingDiverged):
        return f"error: diverged: {_one_line(e)}", EXIT_DIVERGED
    if isinstance(e, invariants.InvariantViolation):
        return (f"error: invariant violated: {_one_line(e)} (a bug: please report it with the "
                "config; --verbosity=0 shows the traceback)", EXIT_INVARIANT)
    return _one_line(e), e.status


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _fail(key, message):
    print(f"error: {key}: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


def _parse_flags(argv):
    """absl's flag parsing, with one-line errors (exit 2) instead of tracebacks."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        cause = _config_file_error(e)
        if cause is not None:
            argument = _config_argument(argv)
            _fail("config", f"{argument}: {_config_file_message(argument, cause)}")
        _fail("flags", _one_line(e))
    except (AttributeError, KeyError) as e:  # ml_collections: an unknown config key
        _fail("config", _unknown_key(e, argv))
    except Exception as e:  # noqa: BLE001 - ml_collections raises plain types for bad values
        _fail("flags", f"{type(e).__name__}: {_one_line(e)}")


def _config_file_error(e: BaseException) -> BaseException | None:
    """The config file's own exception behind ml_collections' flag error (None: another error).

    ml_collections re-raises what `get_config(ARG)` raised with its traceback as the
    message ("Error whilst parsing config file: ..."); the original is the innermost one.
    """
    if "Error whilst parsing config file" not in str(e):
        return None
    while True:
        inner = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
        if inner is None:
            return e
        e = inner


def _config_argument(argv) -> str:
    """The value of --config on the command line (`--config=F` or `--config F`)."""
    for i, a in enumerate(argv[1:], start=1):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return "--config"


def _config_file_message(argument: str, cause: BaseException) -> str:
    path, _, arg = argument.partition(":")
    if isinstance(cause, TypeError) and "get_config()" in str(cause) and arg:
        return f"{path} takes no argument, got {arg!r}"  # get_config() without a parameter
    return _one_line(cause)


def _unknown_key(e: BaseException, argv) -> str:
    inner = e
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    text = str(inner.args[0]) if inner.args else str(inner)
    key, _, hint = text.partition("\n")
    key = key.strip("'\"")
    flag = next((a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")
                 and key in a.split("=", 1)[0].split(".")), f"--config.{key}")
    return f"{flag}: no such config key {key!r}" + (f" ({hint.strip()})" if hint else "")


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort")


def _help() -> str:
    """The usage, the command-line flags and every config key (`keys.describe`)."""
    from lrr_jax import keys

    return "\n".join([
        "usage: python -m lrr_jax.main --config=CONFIG_FILE[:ARG] --workdir=DIR "
        "[--config.KEY=VALUE ...]",
        "",
        __doc__.strip(),
        "",
        "Flags:",
        "  --config: a config file (configs/*.py), optionally with its argument "
        "(configs/transfer.py:imp_lrr_signs)",
        "  --workdir: " + flags.FLAGS["workdir"].help,
        "  --verbosity: show library logging and tracebacks (absl)",
        "  --distributed, --coordinator_address, --num_processes, --process_id: several hosts "
        "(docs/SCALING.md)",
        "",
        keys.describe(),
    ])


def _load_config_file(argv) -> None:
    """Run the `--config=FILE[:ARG]` file's module code, so what it registers (a score, a
    model, a dataset) is in the registries `--help` lists; a file that fails is skipped."""
    import importlib.util

    given = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if not given:
        return
    path = given[-1].split(":", 1)[0]
    try:
        spec = importlib.util.spec_from_file_location("lrr_jax_help_config", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except Exception:  # noqa: BLE001 - help is printed anyway
        return


def run():
    if any(a in HELP_FLAGS for a in sys.argv[1:]):
        _load_config_file(sys.argv[1:])
        print(_help())
        sys.exit(0)
    flags.mark_flag_as_required("config")
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
