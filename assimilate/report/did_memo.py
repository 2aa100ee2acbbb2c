"""A difference-in-differences study in the memo: what its ATT means, the pre-trend test, the event study.

The memo's evidence gains a "Difference in differences" part (the paragraph of
:class:`~assimilate.report.event_study.EventStudySummary` and the event-study plot); its design and
assumptions say that parallel trends, not adjustment for covariates, identify the effect.
"""

from __future__ import annotations

from assimilate.report._document import Block, Heading, Image, Paragraph
from assimilate.report.memo_inputs import MemoInputs

DESIGN_WORDS = (
    "difference in differences: the treatment was rolled out to cohorts of units at known periods, one "
    "period per batch. Each post-period batch's estimate is the ATT in that period (the average effect on "
    "the units that had adopted by then), from each cohort's change since its last pre-adoption period "
    "against the comparison units' change; the periods before the first adoption are placebos whose joint "
    "test gates the post periods, and never enter the posterior."
)
ASSUMPTION = (
    "Parallel trends: without the treatment the adopting units' outcomes would have moved like the comparison "
    "units'; no anticipation before adoption. Partly testable: the pre-period placebos (the pre-trend gate), "
    "whose pass is not proof. Unmeasured differences in level between the cohorts are allowed."
)


def did_blocks(inputs: MemoInputs) -> list[Block]:
    """The evidence's did part: heading, paragraph and the event-study plot (none for other designs)."""
    summary = inputs.event_study
    if inputs.design.kind != "did" or summary is None:
        return []
    blocks: list[Block] = [Heading("Difference in differences"), Paragraph(summary.paragraph())]
    if summary.png is not None:
        placebos = int((summary.table["kind"] == "placebo").sum()) if not summary.table.empty else 0
        effects = int((summary.table["kind"] == "effect").sum()) if not summary.table.empty else 0
        alt = (
            f"Event study of the effect on {inputs.outcome_name}: {placebos} pre-period placebo(s) in grey and "
            f"{effects} post-period effect(s) in blue with their 95% intervals, against the periods since the "
            "first adoption; a dashed line marks the first adoption."
        )
        caption = "Placebos before the first adoption (zero under parallel trends) and the ATT in each later period."
        blocks.append(Image(summary.file_name, summary.png, alt, caption))
    return blocks
