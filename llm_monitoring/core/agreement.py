"""Agreement of an LLM judge with the reviewers: raw agreement and Cohen's kappa per judge version.

A pair is one reviewer rating (feedback.is_good) of a run and the judge's verdict on that run
(passed): a run rated by three reviewers gives three pairs. Kappa corrects the raw agreement for
the agreement two raters would reach by chance with the same pass rates: 1 is perfect, 0 is chance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Agreement:
    """A judge version's agreement with the reviewers, over the pairs seen."""

    check_name: str
    evaluator_version: str
    pairs: int
    agreeing: int
    judge_passed: int  # pairs where the judge said pass
    reviewer_good: int  # pairs where the reviewer said good

    @property
    def raw_agreement(self) -> float | None:
        return self.agreeing / self.pairs if self.pairs else None

    @property
    def kappa(self) -> float | None:
        return cohen_kappa(self.pairs, self.agreeing, self.judge_passed, self.reviewer_good)


def cohen_kappa(pairs: int, agreeing: int, first_yes: int, second_yes: int) -> float | None:
    """Cohen's kappa of two binary raters from counts; None when it is undefined (no pairs, or both
    raters always gave one and the same answer, so chance agreement is 1)."""
    if pairs <= 0:
        return None
    observed = agreeing / pairs
    first, second = first_yes / pairs, second_yes / pairs
    chance = first * second + (1 - first) * (1 - second)
    if chance >= 1:
        return None
    return (observed - chance) / (1 - chance)


def agreement_by_version(pairs: Iterable[tuple[str, str, bool, bool]]) -> list[Agreement]:
    """(check_name, evaluator_version, judge_passed, reviewer_good) pairs -> one Agreement per version."""
    counts: dict[tuple[str, str], list[int]] = {}
    for check_name, version, passed, good in pairs:
        entry = counts.setdefault((check_name, version), [0, 0, 0, 0])
        entry[0] += 1
        entry[1] += passed == good
        entry[2] += bool(passed)
        entry[3] += bool(good)
    return [Agreement(name, version, *entry) for (name, version), entry in sorted(counts.items())]


@dataclass(frozen=True)
class AgreementVerdict:
    """What the agreement gate makes of one judge version."""

    agreement: Agreement
    judged: bool  # enough pairs and a defined kappa
    low: bool  # judged and below the threshold
    line: str


def judge_agreement(agreement: Agreement, min_kappa: float, min_pairs: int) -> AgreementVerdict:
    version, pairs = agreement.evaluator_version, agreement.pairs
    if pairs < min_pairs:
        return AgreementVerdict(agreement, False, False, f"{version}: {pairs} of the {min_pairs} rated runs needed to judge")
    kappa = agreement.kappa
    raw = agreement.raw_agreement or 0.0
    if kappa is None:
        return AgreementVerdict(
            agreement, False, False, f"{version}: kappa undefined (judge and reviewers each gave one answer only), agreement {raw:.0%}"
        )
    low = kappa < min_kappa
    relation = "below" if low else "at or above"
    return AgreementVerdict(
        agreement, True, low, f"{version}: kappa {kappa:.2f} ({relation} {min_kappa:.2f}), agreement {raw:.0%} over {pairs} pairs"
    )
