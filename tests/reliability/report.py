"""The table of every scenario's runs and outcomes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.reliability.invariants import Findings


@dataclass
class RunResult:
    scenario: str
    run: int
    labels: int
    fault: str
    quiet_s: float
    findings: Findings
    detail: str = ""
    seconds: float = 0.0  # the whole run: set-up, load, fault, recovery, checks
    window: bool | None = None  # died inside the window the fault aims at

    @property
    def passed(self) -> bool:
        return not self.findings.violations


@dataclass
class Report:
    results: list[RunResult] = field(default_factory=list)

    def add(self, result: RunResult) -> None:
        self.results.append(result)

    def table(self) -> str:
        """One line per scenario (runs, passes, labels, what the faults did, recovery time),
        then every failed run with its broken invariants."""
        lines = [
            "| scenario | runs | passed | labels | faults injected | in window | outcomes "
            "| recovery s (max) | run s (mean) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        by_scenario: dict[str, list[RunResult]] = {}
        for result in self.results:
            by_scenario.setdefault(result.scenario, []).append(result)
        for scenario, runs in by_scenario.items():
            faults = Counter(r.fault for r in runs)
            facts: Counter[str] = Counter()
            for r in runs:
                facts.update(r.findings.facts)
            outcome = ", ".join(f"{k} {v}" for k, v in sorted(facts.items()) if v)
            fault = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in faults.items())
            aimed = [r.window for r in runs if r.window is not None]
            window = f"{sum(aimed)}/{len(aimed)}" if aimed else "-"
            lines.append(
                f"| {scenario} | {len(runs)} | {sum(r.passed for r in runs)} "
                f"| {sum(r.labels for r in runs)} | {fault} | {window} | {outcome} "
                f"| {max(r.quiet_s for r in runs):.1f} "
                f"| {sum(r.seconds for r in runs) / len(runs):.1f} |"
            )
        failed = [r for r in self.results if not r.passed]
        for r in failed:
            lines.append(f"\nFAILED {r.scenario} run {r.run} ({r.fault}):")
            lines.extend(f"  - {v}" for v in r.findings.violations)
        return "\n".join(lines)

    def runs(self) -> str:
        """Every run on its own line: what was done when, and how long recovery took."""
        lines = ["| scenario | run | labels | fault | detail | recovery s | run s | invariants |"]
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in self.results:
            verdict = "hold" if r.passed else "BROKEN: " + "; ".join(r.findings.violations)
            lines.append(
                f"| {r.scenario} | {r.run} | {r.labels} | {r.fault} | {r.detail} "
                f"| {r.quiet_s:.1f} | {r.seconds:.1f} | {verdict} |"
            )
        return "\n".join(lines)
