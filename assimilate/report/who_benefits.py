"""The memo's "Who benefits" section: each segment's fused effect, the segments that differ, the forest plot.

Each segment's effect is fused over the batches and partially pooled across segments; a segment
differs from the rest under the study's multiplicity rule.

The pipeline stores each segment's fused belief after every batch
(:func:`assimilate.segment_study.fuse_segments`) and the fused difference check
(:func:`assimilate.segment_study.posterior_differences`); :meth:`WhoBenefits.from_tables` reads
the latest batch's rows back, and :func:`who_benefits_section` writes them on the memo's scale.
A segment is said to differ only when its multiplicity-adjusted p-value is below the level: the
section never ranks segments whose differences are within chance.

Example
-------
>>> import pandas as pd
>>> fused = pd.DataFrame({"batch": ["m1", "m1"], "modifier": ["region", "region"], "segment": ["north", "south"],
...                       "estimate": [0.9, 0.1], "std_error": [0.1, 0.1], "mean": [0.85, 0.15],
...                       "lower": [0.66, -0.04], "upper": [1.04, 0.34], "borrowed_share": [0.1, 0.1],
...                       "common_mean": [0.5, 0.5], "alpha": [0.05, 0.05]})
>>> tests = pd.DataFrame({"modifier": ["region", "region"], "segment": ["north", "south"],
...                       "difference": [0.7, -0.7], "adjusted_p_value": [0.001, 0.001], "differs": [True, True]})
>>> WhoBenefits.from_tables(fused, tests, multiplicity="holm", level=0.05).flagged
(('region', 'north'), ('region', 'south'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from assimilate.report._document import Block, Image, Paragraph, Section, Table

if TYPE_CHECKING:
    from assimilate.report.memo_inputs import MemoInputs
    from assimilate.report.units import EffectScale

TITLE = "Who benefits: the effect by segment"
FILE_NAME = "forest_plot.png"
RULE_WORDS = {"holm": "Holm's rule (the chance of any false flag at most the level)",
              "bh": "the Benjamini-Hochberg rule (the expected share of false flags at most the level)"}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class WhoBenefits:
    """Each segment's fused effect after the latest batch and the fused difference check.

    Parameters
    ----------
    fused : DataFrame
        One row per modifier and segment at the latest batch: ``modifier``, ``segment``, ``mean``,
        ``lower``, ``upper``, ``borrowed_share``, ``common_mean``, ``alpha`` (and the batch's own
        ``estimate``, ``std_error``).
    differences : DataFrame
        One row per tested segment: ``modifier``, ``segment``, ``difference``, ``adjusted_p_value``,
        ``differs``.
    multiplicity : {"holm", "bh"}
        The rule the p-values were adjusted by, across every segment of every modifier.
    level : float
        The level of the difference check.
    batch : str
        The latest batch.
    batches_share_units : bool
        Whether the study's batches share units.
    se_inflation : float
        The factor each segment's standard errors were widened by when they do (the overall effect's
        design effect, :func:`assimilate.segment_study.shared_unit_inflation`; 1 otherwise).
    forest_plot : bytes, optional
        The forest plot (:func:`assimilate.report.forest.forest_plot`) as PNG, written beside the memo
        as ``forest_plot.png``.
    """

    fused: pd.DataFrame = field(compare=False)
    differences: pd.DataFrame = field(compare=False)
    multiplicity: str
    level: float
    batch: str
    batches_share_units: bool = False
    se_inflation: float = 1.0
    forest_plot: bytes | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_tables(
        cls,
        posterior: pd.DataFrame,
        differences: pd.DataFrame,
        *,
        multiplicity: str,
        level: float,
        batches_share_units: bool = False,
        se_inflation: float = 1.0,
        forest_plot: bytes | None = None,
    ) -> WhoBenefits | None:
        """The latest batch's rows of the stored segment posterior; None when nothing was fused."""
        if posterior.empty or "batch" not in posterior.columns:
            return None
        latest = str(posterior["batch"].iloc[-1])
        fused = posterior[posterior["batch"].astype(str) == latest].reset_index(drop=True)
        return cls(fused=fused, differences=differences.reset_index(drop=True), multiplicity=multiplicity,
                   level=float(level), batch=latest, batches_share_units=batches_share_units,
            se_inflation=float(se_inflation),
                   forest_plot=forest_plot)  # fmt: skip

    @property
    def flagged(self) -> tuple[tuple[str, str], ...]:
        """``(modifier, segment)`` of the segments whose fused effect differs from the rest."""
        if self.differences.empty:
            return ()
        rows = self.differences.loc[self.differences["differs"].astype(bool)]
        return tuple((str(m), str(s)) for m, s in zip(rows["modifier"], rows["segment"], strict=True))


def _adjusted(found: WhoBenefits, modifier: str, segment: str) -> float:
    tests = found.differences
    if tests.empty:
        return math.nan
    row = tests[(tests["modifier"].astype(str) == modifier) & (tests["segment"].astype(str) == segment)]
    return float(row["adjusted_p_value"].iloc[0]) if len(row) else math.nan


def who_benefits_section(inputs: MemoInputs) -> Section | None:
    """The section, or None for a study without effect modifiers (``inputs.segments`` unset)."""
    found = inputs.segments
    if found is None:
        return None
    image = forest_plot_image(inputs)
    scale = inputs.scale
    level = f"{100 * (1 - float(found.fused['alpha'].iloc[0])):g}%" if "alpha" in found.fused else "95%"
    blocks: list[Block] = [
        Paragraph(
            "Each segment's effect is the primary estimator refitted on that segment's rows in every batch, "
            "fused over the admitted batches with partial pooling across segments: a segment with little data "
            f"is pulled towards the overall effect (the share of its estimate borrowed is shown). After batch "
            f"{found.batch}; intervals at {level}."
        )
    ]
    rows = []
    r: Any  # a fused row: its fields are the table's columns
    for r in found.fused.itertuples(index=False):
        p = _adjusted(found, str(r.modifier), str(r.segment))
        flagged = (str(r.modifier), str(r.segment)) in found.flagged
        rows.append((str(r.modifier), str(r.segment), scale.number(float(r.mean), signed=True),
                     scale.bounds(float(r.lower), float(r.upper)), f"{float(r.borrowed_share):.0%}",
                     "n/a" if math.isnan(p) else f"{p:.3g}", "differs" if flagged else ""))  # fmt: skip
    header = ("modifier", "segment", scale.header("fused effect"), scale.header(f"{level} interval"),
              "borrowed", "adjusted p", "")  # fmt: skip
    blocks.append(Table(header, tuple(rows)))
    rule = RULE_WORDS.get(found.multiplicity, found.multiplicity)
    tested = len(found.differences)
    if found.flagged:
        listed = "; ".join(_differs(found, m, s, scale) for m, s in found.flagged)
        text = f"Under {rule}, at level {found.level:g} over {tested} segments: {listed}."
    else:
        text = (
            f"No segment's effect differs from the rest beyond chance under {rule}, at level {found.level:g} over "
            f"{tested} segments: the data do not single out who benefits more or less."
        )
    blocks.append(Paragraph(text, lead="Segments that differ:"))
    if found.batches_share_units:
        blocks.append(
            Paragraph(
                "The batches share units, whose correlation the segment fusion cannot model: each segment's "
                f"standard errors were widened by {found.se_inflation:.2f}, the overall effect's design effect "
                "(its fused SD with the correlation over its SD as if the batches were independent). This assumes "
                "each segment's batches are correlated as the whole batch's are.",
                lead="Caveat:",
            )
        )
    if image is not None:
        blocks.append(image)
    return Section(TITLE, tuple(blocks))


def _differs(found: WhoBenefits, modifier: str, segment: str, scale: EffectScale) -> str:
    rows = found.differences
    row = rows[(rows["modifier"].astype(str) == modifier) & (rows["segment"].astype(str) == segment)].iloc[0]
    fused = found.fused
    mean = fused[(fused["modifier"].astype(str) == modifier) & (fused["segment"].astype(str) == segment)][
        "mean"
    ]
    return (
        f"{modifier} = {segment} (fused effect {scale.effect(float(mean.iloc[0]))}, "
        f"{scale.effect(float(row['difference']))} from the rest, adjusted p {float(row['adjusted_p_value']):.3g})"
    )


def forest_plot_image(inputs: MemoInputs) -> Image | None:
    """The forest plot as a memo figure, with alt text naming the segments and the flagged ones."""
    found = inputs.segments
    if found is None or found.forest_plot is None:
        return None
    png, file_name = found.forest_plot, FILE_NAME
    flagged = ", ".join(f"{m} = {s}" for m, s in found.flagged) or "none"
    segments = ", ".join(
        f"{m} = {s}" for m, s in zip(found.fused["modifier"], found.fused["segment"], strict=True)
    )
    alt = (
        f"Forest plot of the effect on {inputs.outcome_name} by segment after batch {found.batch} ({segments}): "
        f"each segment's fused effect with its interval, the latest batch's own estimate beside it, and the "
        f"overall effect's band. Segments that differ from the rest: {flagged}."
    )
    caption = "Squares: fused effects (partially pooled); open circles: the latest batch alone; band: the overall effect."
    return Image(file_name, png, alt, caption)


__all__ = ["WhoBenefits", "forest_plot_image", "who_benefits_section"]
