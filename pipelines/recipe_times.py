"""How long each shipped recipe takes, measured: on a 2-core CPU and on a GPU. ``mambatune list`` shows
these figures and the README's main-job time is checked against them by a test.

Every figure is a measurement of ``mambatune run <recipe>`` (the whole run: data, training, the same-run
baselines, scoring, report) with where and when it was taken; a recipe nobody has timed says "not
measured". CPU figures are wall-clock on a 2-core machine; ``busy`` marks one taken while other jobs
shared those 2 cores (the CPU time beside it is what the run itself used), so an idle machine is faster.
GPU figures come from benchmarks/RESULTS.md and use the GPU-size overrides each recipe's header gives
(larger model, full windows, ``train.max_minutes`` caps), so they time a bigger job than the CPU defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Timing:
    """One measured figure: ``minutes`` of wall-clock (None: not measured), a short qualifier for the list
    (``busy``, ``H100, GPU size``) and where it comes from."""

    minutes: float | None
    qualifier: str = ""
    source: str = ""

    def short(self) -> str:
        if self.minutes is None:
            return NOT_MEASURED
        figure = f"{self.minutes * 60:.0f} s" if self.minutes < 1.5 else f"{self.minutes:.0f} min" \
            if self.minutes >= 10 else f"{self.minutes:.1f} min"
        return f"{figure} ({self.qualifier})" if self.qualifier else figure


UNMEASURED = Timing(None)

# recipe -> (2-core CPU, GPU)
RECIPE_TIMES: dict[str, tuple[Timing, Timing]] = {
    "genomics/promoter_full": (
        Timing(9.8, "", "timed here 2026-12-02 17:14-17:24 UTC from a clean clone of a0df3b8 with the README's "
                        "command, the 2 cores otherwise idle: 9 min 47 s wall, 888 s user + 210 s system CPU; the "
                        "same day 10 min 4 s under light load (17c8e49) and 8 min 14 s idle (0dbe6ea) (31.6 min in "
                        "issue 20 was measured on the code of 2026-11-23, before the CPU speed-ups)"),
        Timing(4.2, "H100, GPU size", "RESULTS.md, promoter classification with attention pooling: 253 s for "
                                      "eight such runs side by side on one H100, training capped at 2.8 min")),
    "generic/sequence_classification_lora": (
        Timing(5.0, "busy", "timed here 2026-12-02 13:07 UTC: 301 s wall, 113 s of CPU time, load average 6.7 "
                            "on 2 cores"),
        UNMEASURED),
    "generic/sequence_classification_full": (
        Timing(5.2, "busy", "timed here 2026-12-02 13:12 UTC: 310 s wall, 98 s of CPU time, load average 9.8 "
                            "on 2 cores"),
        UNMEASURED),
    "genomics/promoter_lora": (
        UNMEASURED,
        Timing(4.2, "H100, GPU size", "RESULTS.md, promoter classification with attention pooling: 253 s for "
                                      "eight such runs side by side on one H100, training capped at 2.8 min")),
    "genomics/promoter_head": (
        Timing(16.9, "busy", "timed here 2026-12-02 14:11 UTC: 1,017 s wall, 1,471 s of CPU time, load average "
                             "1.6-4.6 on 2 cores (another run beside it for 12 of the 17 minutes)"),
        UNMEASURED),
    "genomics/promoter_long": (
        UNMEASURED,
        Timing(2.4, "H100, 32 kb", "RESULTS.md, promoter_long on the GPU at 32,768 bp: 168 steps in 143 s, "
                                   "sharing the H100 with three licence runs")),
    "genomics/pretrain_dna": (
        Timing(5.3, "busy", "timed here 2026-12-02 14:30 UTC: 318 s wall, 536 s of CPU time, load average 2.0-3.5 "
                            "on 2 cores (a test run beside it for 2 of the 5 minutes)"),
        Timing(5.4, "H100, GPU size", "RESULTS.md, shipped pretrained models: dna-mamba-1m, 325 s of training, "
                                      "four pretraining runs side by side on one H100")),
    "documents/license_full": (
        UNMEASURED,
        Timing(6.3, "H100, capped", "RESULTS.md, licence classification: text-mamba-1m at 32K bytes, "
                                    "train.max_minutes=6.3 on one H100")),
    "documents/license_head": (
        Timing(12.6, "busy", "timed here 2026-12-02 14:07 UTC: 757 s wall, 716 s of CPU time, load average 2.4-4 "
                             "on 2 cores (another run beside it)"),
        UNMEASURED),
    "documents/pretrain_text": (
        UNMEASURED,
        Timing(4.0, "H100, GPU size", "RESULTS.md: d256x8 byte model, 239 s alone on the H100 (stopped early)")),
    "timeseries/forecast_head": (
        Timing(6.9, "busy", "timed here 2026-12-02 14:04 UTC: 412 s wall, 415 s of CPU time, load average 3.8-8.7 "
                            "on 2 cores"),
        UNMEASURED),
    "timeseries/pretrain_series": (
        UNMEASURED,
        Timing(3.0, "H100", "RESULTS.md, second and third GPU batches: series-mamba-500k, 3 minutes")),
    "timeseries/forecast_lora": (
        UNMEASURED,
        Timing(1.2, "H100, capped", "RESULTS.md, the seasonal skip: LoRA from series-mamba-500k at a 1.2 min cap")),
}


def recipe_times(name: str) -> tuple[Timing, Timing]:
    """(2-core CPU, GPU) figures of a shipped recipe (``genomics/promoter_full``); unmeasured ones say so."""
    return RECIPE_TIMES.get(name, (UNMEASURED, UNMEASURED))
