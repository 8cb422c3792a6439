"""Prometheus text exposition, parsed with prometheus_client's parser."""

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


def parse(text: str, what: str) -> list[Sample]:
    # The parser renames counters to end in _total (OpenMetrics style); keep the names Mixer exposes.
    exposed = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}
    try:
        return [
            Sample(_exposed_name(s.name, exposed), dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, TypeError, IndexError) as exc:
        raise BadPayload(f"{what} is not Prometheus text: {exc}") from None


def find(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def _exposed_name(name: str, exposed: set[str]) -> str:
    if name not in exposed and name.endswith("_total") and name[: -len("_total")] in exposed:
        return name[: -len("_total")]
    return name
