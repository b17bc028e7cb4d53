"""One fixed line style per series, the same in every figure of every report.

The hue is the training method's (IMP blue, WR orange, LRR green, LRR+BN
purple); a variant of a method (another run's mask or signs, a sign
transfer, random masks, a sign perturbation probability) keeps that hue in a
lighter or darker shade with its own line style and marker, all from fixed
tables, so 'IMP + LRR mask & signs' looks the same wherever it appears.
Standard library only (colours are '#rrggbb').
"""

from __future__ import annotations

import dataclasses
import zlib

from lrr_jax.reporting import series as series_lib

METHOD_COLORS = {
    "imp": "#1f77b4",  # blue
    "wr": "#ff7f0e",  # orange
    "lrr": "#2ca02c",  # green
    "lrr_bn_rewind": "#9467bd",  # purple
    "lrr_bn": "#9467bd",
}
OTHER_COLORS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#d62728")
# Variant -> (shade: > 0 towards white, < 0 towards black; line style; marker).
PLAIN = (0.0, "-", "o")
MASK = (-0.4, "--", "s")
SIGN_TRANSFER = {
    "source_signs": (0.4, "-.", "^"),
    "shuffled_init_magnitudes": (0.55, ":", "v"),
    "shuffled_all_init_magnitudes": (0.3, (0, (1, 1)), "<"),
    "own_signs": (-0.55, "-.", "D"),
    "init_signs": (0.45, "--", "P"),
}
RANDOM = {
    "balanced": (-0.3, ":", "X"),
    "erk": (0.35, ":", "*"),
    "uniform": (-0.6, ":", "<"),
    "global": (0.55, ":", ">"),
    "layerwise": (-0.15, ":", "h"),
}
P_MARKERS = {0.1: "s", 0.2: "^", 0.3: "D", 0.5: "v"}
_SPARE = ((0.25, (0, (3, 1, 1, 1)), "p"), (-0.25, (0, (5, 2)), "H"), (0.6, "-", "8"),
          (-0.65, "--", "d"))


@dataclasses.dataclass(frozen=True)
class Style:
    """How a series is drawn: colour '#rrggbb', matplotlib line style and marker."""

    color: str
    linestyle: object
    marker: str

    def kwargs(self) -> dict:
        return {"color": self.color, "ls": self.linestyle, "marker": self.marker}


def shade(color: str, amount: float) -> str:
    """Mixes '#rrggbb' with white (amount > 0) or black (amount < 0) by |amount|."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    a = min(abs(amount), 1.0)
    return "#" + "".join(f"{round(c + (target - c) * a):02x}" for c in rgb)


def method_color(method: str | None) -> str:
    """The fixed colour of a method; unknown methods get one of OTHER_COLORS by name."""
    m = (method or "").lower()
    if m in METHOD_COLORS:
        return METHOD_COLORS[m]
    return OTHER_COLORS[zlib.crc32(m.encode()) % len(OTHER_COLORS)]


def _stable(text: str, table) -> object:
    return table[zlib.crc32(text.encode()) % len(table)]


def style_of(s: series_lib.Series) -> Style:
    """The fixed style of one series (independent of the other series)."""
    identity = s.identity
    if s.kind == "random":
        pruning = str(identity.get("pruning") or "")
        amount, ls, marker = RANDOM.get(pruning) or _stable(pruning, _SPARE)
    elif s.kind == "sign":
        transfer = str(identity.get("sign_transfer") or "source_signs")
        amount, ls, marker = SIGN_TRANSFER.get(transfer) or _stable(transfer, _SPARE)
    elif s.kind == "mask":
        amount, ls, marker = MASK
    else:
        amount, ls, marker = PLAIN
    if s.perturbation_run:
        # p = 0 of a perturbation run: lighter, dash-dot; p > 0: darker with p, a marker
        # per p. Neither clashes with the plain run of the method.
        p = s.perturb_prob
        if p > 0:
            amount -= min(0.7, 1.4 * p)
            marker = P_MARKERS.get(round(p, 6)) or _stable(f"{p:g}", _SPARE)[2]
        else:
            amount, ls = amount + 0.35, "-." if ls == "-" else ls
    return Style(shade(method_color(s.method), amount), ls, marker)


def styles_for(series: list[series_lib.Series]) -> dict[str, Style]:
    """{label: Style} for all series of a report: style_of each, with clashes resolved.

    Two series that would look the same (e.g. one method on two datasets) get
    the spare variants, in series order, so each label stays recognisable.
    """
    out: dict[str, Style] = {}
    used: set[Style] = set()
    for s in series:
        base = method_color(s.method)
        candidates = [style_of(s)] + [Style(shade(base, a), ls, m) for a, ls, m in _SPARE] + [
            Style(shade(base, a), ls, m) for a in (0.15, -0.15, 0.3, -0.3, 0.45, -0.45)
            for _, ls, m in _SPARE]
        style = next((c for c in candidates if c not in used), candidates[0])
        used.add(style)
        out[s.label] = style
    return out
