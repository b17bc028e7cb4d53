"""The one exception type users see for bad input: it names the config key or file at fault."""


class ConfigError(ValueError):
    """A bad config value, a missing file or an incompatible run directory.

    `main` prints `str(error)` as a single line and exits with status 2, before
    any compilation and without touching an existing run.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")
