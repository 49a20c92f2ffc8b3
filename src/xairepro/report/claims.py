"""The claims of a run, ours beside the study's: tallies and one line per claim (terminal and report).

Reads the entries of ``claims.json`` as the runner writes them (``status``, ``cause``, ``study``,
``agreement``, ``kind``); entries of older runs without these fields count as tests with no study verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Tally", "tally", "verdict_label", "claim_lines"]


def verdict_label(claim: Mapping[str, Any]) -> str:
    """``holds`` / ``fails`` / ``partly`` / ``inconclusive (within-noise)`` ..."""
    cause = claim.get("cause") or ""
    return f"{claim.get('status', '?')} ({cause})" if cause else str(claim.get("status", "?"))


@dataclass(frozen=True)
class Tally:
    """Counts over the study claims (claims with a study verdict): tests and sanity checks apart."""

    tests: int
    decided: int
    agree: int
    disagree: int
    undecided: int
    sanity: int

    def sentence(self) -> str:
        if not self.tests and not self.sanity:
            return "no study claims in this run"
        text = (f"{self.tests} study claims tested: {self.decided} decided ({self.agree} agree with the study, "
                f"{self.disagree} disagree), {self.undecided} undecided")
        return text + (f"; {self.sanity} sanity check(s) shown apart" if self.sanity else "")


def tally(claims: Iterable[Mapping[str, Any]]) -> Tally:
    study = [c for c in claims if c.get("study")]
    tests = [c for c in study if c.get("kind", "test") != "sanity"]
    agree = sum(c.get("agreement") == "agrees" for c in tests)
    disagree = sum(c.get("agreement") == "disagrees" for c in tests)
    return Tally(len(tests), agree + disagree, agree, disagree, len(tests) - agree - disagree,
                 len(study) - len(tests))


def claim_lines(claims_by_experiment: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    """One line per claim: ``experiment/id  ours  study's  agreement``, then the tally."""
    rows = [(f"{exp}/{c['id']}", verdict_label(c), c.get("study") or "-",
             (c.get("agreement") or "-") + (" (sanity check, not counted)" if c.get("kind") == "sanity" else ""))
            for exp, claims in claims_by_experiment.items() for c in claims]
    if not rows:
        return ["no claims"]
    widths = [max(len(r[i]) for r in rows + [("claim", "ours", "study", "")]) for i in range(3)]
    head = ("claim", "ours", "study", "agreement")
    lines = ["  ".join(x.ljust(w) for x, w in zip(head[:3], widths)) + "  " + head[3]]
    lines += ["  ".join(x.ljust(w) for x, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    lines.append(tally(c for claims in claims_by_experiment.values() for c in claims).sentence())
    return lines
