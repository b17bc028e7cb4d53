"""Path-valued flags and config keys: `~` and environment variables are expanded.

A shell expands `~` only at the start of a word, so in
`--data_dir=~/tfds` or `--config.cifar_archive=~/cifar-10-binary.tar.gz`
the program receives a literal `~`. Every path the data module reads goes
through `expand` (or `config_path`), so those work as written and nothing
creates a folder literally named `~`.
"""

import os

# Config keys holding paths that the data module reads.
PATH_KEYS = ("data_dir", "cifar_archive", "tiny_imagenet_dir", "idx_dir")


def expand(path):
    """`path` with a leading `~` / `~user` and `$VAR` / `${VAR}` expanded; '' and None unchanged."""
    if not path:
        return path
    return os.path.expanduser(os.path.expandvars(os.fspath(path)))


def config_path(config, key: str) -> str:
    """`config.get(key, '')` expanded (see `expand`); '' when unset."""
    return expand(config.get(key, "") or "")
