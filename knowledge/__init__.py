"""Guide knowledge: ingest troubleshooting guides and answer questions from them.

index = load_index(["guides/istio-troubleshooting.md"])
for match in index.ask("envoy keeps crashing under load"):
    print(match.title, match.score, match.url)
"""

from .builtin import ENTRIES
from .guide import DEFAULT_HOME, Fetcher, Guide, GuideError, Section, parse_guide, slugify
from .index import Index, Match, excerpt_for_section, load_index

__all__ = [
    "DEFAULT_HOME",
    "ENTRIES",
    "Fetcher",
    "Guide",
    "GuideError",
    "Index",
    "Match",
    "Section",
    "excerpt_for_section",
    "load_index",
    "parse_guide",
    "slugify",
]
