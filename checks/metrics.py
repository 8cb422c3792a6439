"""Prometheus text exposition, parsed with prometheus_client's parser.

The one place that decides whether a scrape is complete: a check never sees half a payload as data.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from checks.errors import BadPayload


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict
    value: float

    def line(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{self.name}{{{labels}}} {value}" if labels else f"{self.name} {value}"

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.labels.items())), self.value))


def parse(text: str, what: str, *, always: tuple[str, ...] = ()) -> list[Sample]:
    """Every sample of a complete scrape. ``always`` names families the component exports on every scrape
    (its process metrics): one missing means the answer is not the whole page, not that nothing happened."""
    # The parser renames counters to end in _total (OpenMetrics style); keep the names Mixer exposes.
    exposed = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}
    try:
        samples = [
            Sample(_exposed_name(s.name, exposed), dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, TypeError, IndexError) as exc:
        raise BadPayload(f"{what} is not Prometheus text: {exc}") from None
    if text and not text.endswith("\n"):
        # The format ends every line with a newline; without it the last value may be a cut number.
        last = text.rsplit("\n", 1)[-1]
        raise BadPayload(f"{what} was cut short: its last line {last[:80]!r} has no end")
    missing = [name for name in always if not any(s.name.startswith(name) for s in samples)]
    if missing:
        raise BadPayload(f"{what} is incomplete: it lacks {', '.join(missing)}, which it exports on every scrape")
    return samples


def find(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def _exposed_name(name: str, exposed: set[str]) -> str:
    if name not in exposed and name.endswith("_total") and name[: -len("_total")] in exposed:
        return name[: -len("_total")]
    return name
