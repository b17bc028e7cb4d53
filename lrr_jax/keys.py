"""Every config key with its default and one line of help, read from `config_base`'s source.

The comments in `config_base.get_base_config` are the one place a key is
explained: a key's help is its end-of-line comment, else the comment block
right above it. The keys are grouped by the sections of that function (a
comment block after a blank line starts one: `# Data.`, `# Model.`, ...).
`python -m lrr_jax.main --help` prints `describe()`.
"""

from __future__ import annotations

import inspect
import io
import re
import tokenize

from lrr_jax import config_base

_ASSIGN = re.compile(r"^\s*c\.(\w+)\s*=")


def table() -> list[tuple[str, list[tuple[str, object, str]]]]:
    """[(section, [(key, default, help), ...]), ...] in the order of `get_base_config`."""
    source = inspect.getsource(config_base.get_base_config)
    comments = {}  # line number -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), tok.line.strip()
                                      .startswith("#"))
    defaults = config_base.get_base_config()
    sections: list[tuple[str, list]] = [("General", [])]
    block: list[str] = []
    blank_before = True
    for number, line in enumerate(source.splitlines(), start=1):
        text, whole_line = comments.get(number, ("", False))
        if whole_line:
            if blank_before and not block:  # a block after a blank line: a section starts
                sections.append((re.split(r"[.:(]", text, maxsplit=1)[0].strip(), []))
            block.append(text)
            blank_before = False
            continue
        match = _ASSIGN.match(line)
        if match:
            key = match.group(1)
            help_text = text or " ".join(block)
            sections[-1][1].append((key, defaults[key], help_text))
        blank_before = not line.strip()
        block = []
    return [(name, rows) for name, rows in sections if rows]


def registries() -> dict[str, tuple]:
    """key -> the names its registry accepts now (entries a config file added included)."""
    from lrr_jax import (
        data,
        engine,
        experiments,
        models,
        pruning,
        replicas,
        rewind,
        signs,
        studies,
        train,
    )

    return {"experiment": tuple(experiments.EXPERIMENTS), "method": tuple(rewind.MODES),
            "dataset": tuple(data.DATASETS), "normalization": data.NORMALIZATIONS,
            "model": tuple(models.MODELS), "score": tuple(pruning.SCORES),
            "pruning": tuple(pruning.ALLOCATIONS), "lr_schedule": tuple(train.LR_SCHEDULES),
            "sign_transfer": tuple(v for v in signs.SIGN_TRANSFERS if v),
            "data_order": replicas.DATA_ORDERS, "input_pipeline": engine.PIPELINES,
            "sign_source_level": studies.SIGN_SOURCE_LEVELS,
            "init_signs_from": studies.INIT_SIGNS_FROM}


def missing_help() -> list[str]:
    """Keys without a line of help (tests keep this empty)."""
    return [k for _, rows in table() for k, _, h in rows if not h]


def describe() -> str:
    """The `--help` text of the config keys."""
    out = ["Config keys (override any with --config.KEY=VALUE; defaults of "
           "lrr_jax/config_base.py, a config file may change them):"]
    choices = registries()
    for section, rows in table():
        out.append(f"\n{section}:")
        for key, default, help_text in rows:
            out.append(f"  {key} = {default!r}\n      {help_text}")
            if key in choices:
                out.append(f"      one of: {' | '.join(choices[key])}")
    return "\n".join(out)
