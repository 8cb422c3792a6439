"""The answer index: BM25 over guide sections and built-in knowledge together.

Ranking is BM25 (bm25s).  BM25 scores have no scale, so sections are ordered by a
coverage: the share of the question's information (IDF mass) that the section
accounts for (or, for a long message, the specific information it matches: MASS),
damped by how far the section trails the best BM25 rank.  Words the index has never
seen count against coverage; numbers and English words count little or nothing.

Whether to answer at all is a separate decision: a logistic model (DECISION) over a
few features of the question and its best section (`Index.features`: coverage, how
much of the heading it names, known and unknown words, length, tutorial phrasing,
another mesh, the most specific words the section lacks, the gap to the next section,
and how alike it is to the nearest labelled question of the section and to the nearest
labelled off-topic one, knowledge.labelled), fit and cross-validated by
bench/ask_fit.py.  A match's score is that model's confidence; 0.5 is the line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import bm25s
import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import DamerauLevenshtein

from handlers.markup import escape_mrkdwn

from . import builtin, labelled
from .guide import DEFAULT_HOME, Block, Fetcher, Section, read_guide
from .text import (
    ABBREVIATIONS,
    STOPWORDS,
    SYNONYMS,
    about_other_mesh,
    answers_how_to,
    asks_how_to,
    chat_word,
    clean_chat,
    common_word,
    english_word,
    stem,
    terms,
    words,
)

# The answer/abstain decision: a logistic model over Index.features, fit by bench/ask_fit.py on the tuning sets
# (class-balanced, L2 on standardised features), its bias moved so that 0.5 is the line at which 98 % of the
# tuning sets' off-topic questions stay unanswered.  Refit: python bench/ask_fit.py (it prints these lines).
DECISION = {
    "score": 5.874,
    "heading": 2.149,
    "known": 1.917,
    "unknown": -0.970,
    "words": 1.426,
    "how_to": 0.534,
    "other_mesh": -5.249,
    "missed": -0.080,
    "missed_mass": -3.407,
    "line": 0.982,
    "learned": -4.088,
    "asked": 8.090,
    "gap": 1.212,
    "unanswered": -10.145,
    "how_to_score": -5.871,
}
DECISION_BIAS = -5.090
RELATIVE = 0.6  # further matches must reach this share of the best score
EXCERPT_LIMIT = 3000  # Slack's limit for a section block's text
EXCERPT_TARGET = 1400  # what we aim for: a few steps, not the whole section
SYNONYM_WEIGHT = 0.5
SAME_TEXT = 75  # rapidfuzz ratio from which two guides' texts say the same (unrelated: under 45)
PAIR_WEIGHT = 0.5  # an adjacent pair of question words, found as a pair in a section
SUGGEST = 0.2  # with no confident answer, sections with this much coverage are offered as "closest sections"
# BM25F by repetition: how many times each field of a section counts in its document.  Headings and
# the checks' signatures name the problem most precisely; prose and code (commands, their output) less.
# The context (the headings above a section, its page's topic) says where it is, not what it answers.
# Labelled questions (knowledge.labelled) say in people's words what a section answers, each in passing.
FIELD_WEIGHTS = {"heading": 3, "subheadings": 2, "signatures": 2, "symptoms": 1, "context": 1, "body": 1,
                 "commands": 1, "asked": 1}
# How much of a question word's information a section accounts for, by the field it is found in.
COVER = {"heading": 1.0, "subheadings": 1.0, "signatures": 1.0, "symptoms": 1.0, "context": 0.5, "body": 0.7,
         "commands": 0.7, "asked": 0.5}
LONG_FIELDS = ("body", "commands")
# A prose or code field longer than LONG terms covers a word by (LONG / its length) ** LONG_POWER less: a long
# log dump or walkthrough has many words in passing, which say less about what the section answers.
LONG = 80
LONG_POWER = 0.5
TYPO_WEIGHT = 0.7  # a corrected word is a guess: it counts for less
ENGLISH_WEIGHT = 0.6  # a rarer English word the guides never use (a service's name: "checkout", "billing")
CHAT_DF = 3  # ... and used by this many sections at most (a word most sections use says little anyway)
COMMON_WEIGHT = 0.3  # a common English word the guides never use ("ago", "big") asks little
EVIDENCE = 2.0  # matched question words needed for full confidence
RANK_POWER = 1.0  # a section trailing the best BM25 rank is damped by (its rank / the best) ** this
# IDF mass a section must match to be fully confident whatever else the question says: a pasted error line
# of specific words is an answer even inside a long message.
MASS = 35


@dataclass(frozen=True)
class Answer:
    matches: list[Match]  # confident answers: DESIGN.md's `matches`
    suggestions: list[Match]  # below the confidence line: the closest sections, when there is no match

    def to_json(self) -> dict:
        return {"matches": [m.to_json() for m in self.matches],
                "suggestions": [m.to_json() for m in self.suggestions]}


@dataclass(frozen=True)
class Match:
    section: str
    title: str
    score: float
    excerpt: str  # Slack mrkdwn
    checks: list[str]
    url: str
    plain_excerpt: str = field(default="", repr=False)  # the excerpt as plain text, for terminals
    guide: str = "builtin"  # the guide it quotes (its name), or "builtin" (meshbot's own words)
    also_in: tuple[str, ...] = ()  # other guides with the same heading

    @property
    def guides(self) -> list[str]:
        return [self.guide, *self.also_in]

    def to_json(self) -> dict:
        return {
            "section": self.section,
            "title": self.title,
            "score": round(self.score, 3),
            "excerpt": self.excerpt,
            "checks": list(self.checks),
            "guide": self.guide,
            "guides": self.guides,
            "url": self.url,
        }


class Index:
    def __init__(self, sections: Sequence[Section], unanswered: Sequence[str] = ()) -> None:
        """`unanswered`: labelled questions that no section answers (knowledge.labelled)."""
        self.sections = list(sections)
        self.warnings: tuple[str, ...] = ()  # from load_index: parts of guides that could not be read
        self._by_id = {alias: s for s in self.sections for alias in s.aliases}
        self._by_id.update({s.id: s for s in self.sections})
        docs = [_with_pairs(_document_text(s)) for s in self.sections]
        self._bm25 = bm25s.BM25()
        self._bm25.index(docs, show_progress=False)
        self._vocab = {t for doc in docs for t in doc}
        self._doc_terms = [set(doc) for doc in docs]
        self._position = {s.id: i for i, s in enumerate(self.sections)}
        # Index.features: each symptom's terms; a section with none (a guide meshbot has no entries for) has its
        # heading and its checks' signatures of three words or more (an error line, not a metric name or port).
        self._lines = [[set(ts) for x in (s.symptoms or (s.title, *s.also_titles, *s.signatures))
                        if len(ts := terms(x)) >= (3 if x in s.signatures else 1)] for s in self.sections]
        # Where each term occurs in each section: the best field's COVER share (heading beats body).
        self._cover = []
        own: list[set[str]] = []
        for sec in self.sections:
            place: dict[str, float] = {}
            mine: set[str] = set()
            for name, text in fields(sec).items():
                ts = terms(text)
                share = COVER[name]
                if name in LONG_FIELDS and len(ts) > LONG:
                    share *= (LONG / len(ts)) ** LONG_POWER
                for t in ts:
                    place[t] = max(place.get(t, 0.0), share)
                if name != "asked":
                    mine.update(ts)
            self._cover.append(place)
            own.append(mine)
        # The guides' and meshbot's own words: what makes a question word known (and weighs it); words only
        # earlier questions use ("someone", a service's name) rank and cover but do not make it on topic.
        self._own = set().union(*own)
        self._own_df: dict[str, int] = {}
        for mine in own:
            for t in mine:
                self._own_df[t] = self._own_df.get(t, 0) + 1
        n = len(docs)
        df: dict[str, int] = {}
        for doc in self._doc_terms:
            for t in doc:
                df[t] = df.get(t, 0) + 1
        self._df = df
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self._idf_unknown = math.log(1 + (n - 0.5) / 1.5)  # as rare as a word in one section
        # Index.features: the labelled questions of each section, and those no section answers, as (terms, norm).
        self._asked = [[self._question(q) for q in s.asked] for s in self.sections]
        self._unanswered = [self._question(q) for q in unanswered]
        self._last_unanswered: tuple[frozenset[str] | None, float] = (None, 0.0)
        common_word("the")  # loads the English word counts now, not during the first answer
        # Raw words for typo correction, mapped to their stems.
        self._spelling = {
            w: stem(w)
            for s in self.sections
            for w in words(_document_text(s, own=True))
            if len(w) >= 4 and w.isalpha() and w not in STOPWORDS
        }

    def _question(self, text: str) -> tuple[frozenset[str], float]:
        """A labelled question's terms (numbers left out) and their norm, as `_nearest` weighs them."""
        ts = frozenset(t for t in terms(text) if not _numeric(t))
        return ts, math.sqrt(sum(self._info(t) ** 2 for t in ts)) or 1.0

    def section(self, section_id: str) -> Section | None:
        return self._by_id.get(section_id)

    def ask(self, question: str, limit: int = 3) -> list[Match]:
        """Confident answers, best first; empty when no section answers with confidence."""
        return self.answer(question, limit).matches

    def answer(self, question: str, limit: int = 3) -> Answer:
        """Confident matches, or else (never both) up to `limit` low-confidence suggestions.

        A question that is a section id (what a "not sure" button sends) is answered by that section.
        A match's score is the decision model's confidence (`confidence`): 0.5 and above is an answer.
        """
        if question.strip() in self._by_id:
            return Answer([self._match(self._by_id[question.strip()], 1.0, None)], [])
        scored = self._scored(question)
        if not scored:
            return Answer([], [])
        top = scored[0][0]
        wanted = self._query(question)[1]
        found = [(self.confidence(question, scored, i, wanted), s) for i, (score, s) in enumerate(scored[:limit])
                 if score >= SUGGEST]
        for i in range(1, len(found)):  # best first, whatever a later section's own features say
            found[i] = (min(found[i][0], found[i - 1][0]), found[i][1])
        if found and found[0][0] >= 0.5:
            return Answer([self._match(s, p, question) for (p, s), (score, _) in zip(found, scored, strict=False)
                           if p >= 0.5 and score >= RELATIVE * top], [])
        return Answer([], [self._match(s, p, question) for p, s in found])

    def confidence(self, question: str, scored: list[tuple[float, Section]], i: int = 0, wanted=None) -> float:
        """How likely the question is one the guides answer, with `scored[i]` as its answer (0..1).

        A logistic model over `features` (DECISION: its weights and how they were fit).
        """
        f = self.features(question, scored, i, wanted)
        z = DECISION_BIAS + sum(DECISION[k] * f[k] for k in DECISION)
        return 1 / (1 + math.exp(-z))

    def features(self, question: str, scored: list[tuple[float, Section]], i: int = 0,
                 wanted: dict[str, float] | None = None) -> dict[str, float]:
        """What the answer/abstain decision reads, for `scored[i]` as the answer.

        score: its coverage (`_scored`); heading: the share of its heading's information (IDF mass) the
        question names; known: the share of the question's information in words the index has (or their
        synonyms); unknown: how many words the index lacks (not numbers, English words or typos); words:
        log(1 + the question's words); how_to: a tutorial question (`asks_how_to`) and the heading no
        instruction; other_mesh: about Linkerd, Consul or Kuma; missed: the IDF of the most specific word the
        index has and the section lacks (a share of the largest IDF), missed_mass: the share of the question's
        information in such words; line: the largest share of one symptom's information the question names;
        learned: whether the section has labelled questions; asked / unanswered: how alike the question is to the
        nearest of them / of the labelled off-topic ones (`_nearest`); gap: how far the next section trails;
        how_to_score: tutorial phrasing times coverage.
        """
        score, section = scored[i]
        wanted = self._query(question)[1] if wanted is None else wanted
        info = {t: w * self._info(t) for t, w in wanted.items() if not _numeric(t)}
        total = sum(info.values()) or 1.0
        heading = set(terms("\n".join((section.title, *section.also_titles))))
        heading_mass = sum(self._idf.get(t, 0.0) for t in heading) or 1.0
        have = self._doc_terms[self._position[section.id]]
        missed = [self._idf[t] for t in info if t in self._own and t not in have
                  and not any(x in have for x in SYNONYMS.get(t, ()))]
        out = {
            "score": score,
            "heading": sum(self._idf.get(t, 0.0) for t in heading if t in wanted) / heading_mass,
            "known": sum(x for t, x in info.items() if self._known(t)) / total,
            "unknown": float(sum(1 for t, w in wanted.items() if not self._known(t) and w >= 1.0
                                 and not _numeric(t))),
            "words": math.log1p(len(wanted)),
            "how_to": float(asks_how_to(question) and not answers_how_to(section.title)),
            "other_mesh": float(about_other_mesh(question)),
            "missed": max(missed, default=0.0) / self._idf_unknown,
            "missed_mass": sum(missed) / total,
            "line": self._best_line(section, wanted),
            "learned": float(bool(self._asked[self._position[section.id]])),
            "asked": self._nearest(self._asked[self._position[section.id]], wanted),
            "unanswered": self._nearest_unanswered(wanted),
            "gap": 1 - scored[i + 1][0] / score if i + 1 < len(scored) and score > 0 else 1.0,
        }
        out["how_to_score"] = out["how_to"] * out["score"]  # a tutorial question needs a closer match
        return out

    def _nearest_unanswered(self, wanted: dict[str, float]) -> float:
        """`_nearest` over the labelled off-topic questions: a question's, not a section's, so `answer` asks it for
        each of its candidates and one remembered result serves them all."""
        key = frozenset(wanted)
        if self._last_unanswered[0] != key:
            self._last_unanswered = (key, self._nearest(self._unanswered, wanted))
        return self._last_unanswered[1]

    def _nearest(self, questions: list[tuple[frozenset[str], float]], wanted: dict[str, float]) -> float:
        """How alike the question and the most alike of `questions` (terms, norm) are: the cosine of their terms,
        each weighted by its information (`_info`: a word no section has counts as a rare one)."""
        mine = {t for t in wanted if not _numeric(t)}
        mass = math.sqrt(sum(self._info(t) ** 2 for t in mine)) or 1.0
        best = 0.0
        for other, norm in questions:
            shared = sum(self._info(t) ** 2 for t in mine & other)
            if shared:
                best = max(best, shared / (mass * norm))
        return best

    def _best_line(self, section: Section, wanted: dict[str, float]) -> float:
        """The largest share of one symptom's information (IDF mass) that the question names."""
        best = 0.0
        for line in self._lines[self._position[section.id]]:
            mass = sum(self._idf.get(t, 0.0) for t in line) or 1.0
            best = max(best, sum(self._idf.get(t, 0.0) for t in line if t in wanted) / mass)
        return best

    @staticmethod
    def may_answer(question: str, section: Section) -> bool:
        """Whether the question is one a guide section answers with confidence at all: not a tutorial
        question (unless the heading is an instruction), not one about another mesh."""
        return (answers_how_to(section.title) or not asks_how_to(question)) and not about_other_mesh(question)

    def _scored(self, question: str) -> list[tuple[float, Section]]:
        weights, wanted, fixes = self._query(question)
        if not weights or not self.sections:
            return []
        known = {t: w for t, w in weights.items() if t in self._vocab}
        # Adjacent word pairs found in a section (a pasted error line, a heading's phrase) rank it higher;
        # they never count in the coverage below, so a pair the guides lack costs nothing.
        sequence = [fixes.get(t, t) for t in terms(clean_chat(question))]
        known.update({p: PAIR_WEIGHT for p in _pairs(sequence) if p in self._vocab})
        raw = np.zeros(len(self.sections))
        for t, w in known.items():
            raw += w * self._bm25.get_scores([t])
        best = float(raw.max())
        if best <= 0:
            return []
        # Numbers (timestamps, counts, addresses, a port) count for a section that has them, never against
        # one that lacks them.
        info = {t: w * self._info(t) for t, w in wanted.items()}
        total = sum(x for t, x in info.items() if not _numeric(t))
        scored = []
        for i, s in enumerate(self.sections):
            if raw[i] <= 0:
                continue
            have, cover = self._doc_terms[i], self._cover[i]
            hits = {t: w for t, w in wanted.items() if t in have or any(x in have for x in SYNONYMS.get(t, ()))}
            covered = sum(info[t] * cover.get(t, COVER["body"]) for t in hits)
            extra = sum(info[t] for t in hits if _numeric(t))
            evidence = min(1.0, sum(hits.values()) / EVIDENCE)
            share = covered / (total + extra) * evidence if total + extra else 0.0
            score = max(share, covered / MASS) * (raw[i] / best) ** RANK_POWER
            scored.append((min(score, 1.0), s))
        scored.sort(key=lambda p: -p[0])
        return scored

    def _query(self, question: str) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
        """The question's terms, weighted: (to rank with, what it asks for, typo → the term it was taken for).

        What a question asks for, the measure of its coverage, is its own words: a corrected typo counts
        TYPO_WEIGHT, a common English word the guides never use COMMON_WEIGHT (it says little about the
        problem), a word with digits the guides never use nothing (timestamps, pod hashes).  Ranking also
        uses the parts of CamelCase names and synonyms, at SYNONYM_WEIGHT.
        """
        own: dict[str, float] = {}
        extra: dict[str, float] = {}
        fixes: dict[str, str] = {}
        for chunk in clean_chat(question).split():
            in_path = chunk.count("/") >= 2  # in paths and URLs pasted from logs, unknown words are noise
            whole = words(chunk, camel=False)
            for w in words(chunk):  # AuthorizationPolicy: authorization, policy
                if w not in whole and len(w) > 1 and w not in STOPWORDS:
                    extra.setdefault(stem(w), SYNONYM_WEIGHT)
            for w in whole:
                if len(w) < 2 or w in STOPWORDS:
                    continue
                t, weight = stem(ABBREVIATIONS.get(w, w)), 1.0
                if t in self._own or t in SYNONYMS:
                    if (chat_word(w) or chat_word(t)) and self._own_df.get(t, 0) <= CHAT_DF:
                        weight = COMMON_WEIGHT
                elif in_path or not w.isalpha():
                    continue
                elif common_word(w):
                    weight = COMMON_WEIGHT
                elif english_word(w) and not (len(w) >= 4 and self._correct(w)):
                    weight = ENGLISH_WEIGHT
                elif t in self._vocab:
                    pass  # a word only earlier questions use ("containerd"): theirs, not a typo of a guide's word
                elif len(w) >= 4 and (fixed := self._correct(w)):
                    fixes[t] = fixed
                    t, weight = fixed, TYPO_WEIGHT
                own[t] = max(weight, own.get(t, 0.0))
        weights = {**extra, **own}
        for t in list(weights):
            for x in SYNONYMS.get(t, ()):
                weights.setdefault(x, SYNONYM_WEIGHT)
        return weights, own, fixes

    def _info(self, term: str) -> float:
        """A term's IDF; a word the guides lack but whose synonyms they use is as specific as those."""
        if term in self._idf:
            return self._idf[term]
        known = [self._idf[x] for x in SYNONYMS.get(term, ()) if x in self._idf]
        return min(known) if known else self._idf_unknown

    def _known(self, term: str) -> bool:
        return term in self._own or (any(x in self._own for x in SYNONYMS.get(term, ())))

    def _correct(self, word: str) -> str | None:
        edits = 1 if len(word) < 8 else 2
        hit = process.extractOne(word, self._spelling.keys(), scorer=DamerauLevenshtein.distance, score_cutoff=edits)
        return self._spelling[hit[0]] if hit else None

    def _match(self, s: Section, score: float, question: str | None) -> Match:
        return Match(
            section=s.id,
            title=s.title,
            score=float(score),
            excerpt=excerpt(s, self._relevance(question)),
            checks=list(s.checks),
            url=s.url,
            plain_excerpt=excerpt(s, self._relevance(question), plain=True),
            guide=s.guide or "builtin",
            also_in=s.also_in,
        )

    def _relevance(self, question: str | None):
        """A scorer for blocks: IDF mass of the question's terms found in a block."""
        weights = self._query(question)[0] if question else {}

        def score(block: Block) -> float:
            have = set(terms(block.plain))
            return sum(w * self._idf.get(t, 0.0) for t, w in weights.items() if t in have)

        return score


def _numeric(term: str) -> bool:
    return any(c.isdigit() for c in term)


def _pairs(ts: list[str]) -> list[str]:
    return [f"{a}+{b}" for a, b in zip(ts, ts[1:], strict=False) if a != b]


def _with_pairs(text: str) -> list[str]:
    """Index terms of a document and its adjacent pairs, line by line (no pair spans two lines)."""
    out: list[str] = []
    for line in text.splitlines():
        ts = terms(line)
        out += ts + _pairs(ts)
    return out


def fields(s: Section) -> dict[str, str]:
    """The fields a section is ranked on (FIELD_WEIGHTS)."""
    return {
        "heading": "\n".join((s.title, *s.also_titles)),
        "subheadings": "\n".join(s.subheadings),
        "signatures": "\n".join(s.signatures),
        "symptoms": "\n".join(s.symptoms),
        "context": "\n".join(s.context),
        "body": "\n\n".join(b.words for b in s.blocks),
        "commands": "\n".join(s.code_blocks),
        "asked": "\n".join(s.asked),
    }


def _document_text(s: Section, own: bool = False) -> str:
    """Its fields, each repeated FIELD_WEIGHTS times; `own`: without the questions asked (their typos)."""
    return "\n".join(text for name, text in fields(s).items() for _ in range(FIELD_WEIGHTS[name])
                     if text and not (own and name == "asked"))


def excerpt(section: Section, relevance=None, *, plain: bool = False, prose: bool = False) -> str:
    """The most relevant blocks of a section, in order, ending with its link.

    ``prose`` leaves out commands and built-in fixes: a finding's reply already has the check's own fix,
    with the real names where the guide has placeholders, and one reply should tell one story.
    """
    blocks = [b for b in section.blocks if not (prose and (b.code or b.advice))]
    form = (lambda b: b.plain) if plain else (lambda b: b.mrkdwn)
    link = f"More: {section.url}" if plain else f"<{section.url}|More: {section.title}>"
    budget = min(EXCERPT_TARGET, EXCERPT_LIMIT - len(link) - 10)
    scores = [relevance(b) if relevance else 0.0 for b in blocks]
    if sum(len(form(b)) + 2 for b in blocks) <= budget:
        order = list(range(len(blocks)))  # short enough to quote whole
    elif blocks and max(scores) > 0:
        # The best blocks, plus the opening paragraph for context when it fits.
        order = sorted(range(len(blocks)), key=lambda i: -scores[i])
        order = [i for i in order if scores[i] >= 0.5 * scores[order[0]]]
        if not blocks[0].mrkdwn.startswith("```") and 0 not in order:
            order.insert(1, 0)
    else:
        order = list(range(len(blocks)))
    chosen: list[int] = []
    used = 0
    for i in order:
        # A block ending in a colon introduces the next one (usually its code).
        group = [i, i + 1] if form(blocks[i]).endswith(":") and i + 1 < len(blocks) else [i]
        group = [j for j in group if j not in chosen]
        size = sum(len(form(blocks[j])) + 2 for j in group)
        if chosen and used + size > budget:
            continue
        chosen.extend(group)
        used += size
    parts: list[str] = []
    for n, i in enumerate(sorted(chosen)):
        if n and i != sorted(chosen)[n - 1] + 1:
            parts.append("…")
        parts.append(form(blocks[i]))
    body = _truncate("\n\n".join(parts), EXCERPT_LIMIT - len(link) - 2)
    return f"{body}\n\n{link}" if body else link


def _truncate(text: str, limit: int) -> str:
    """Cut at a line boundary under `limit`, closing a code block left open."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 8].rsplit("\n", 1)[0]
    if cut.count("```") % 2:
        cut += "\n```"
    return cut + "\n…"


def builtin_sections() -> list[Section]:
    sections = []
    titles = {e.section: e.title for e in builtin.ENTRIES}
    for e in builtin.ENTRIES:
        blocks = []
        if e.looks_at:
            blocks.append(Block(f"*What meshbot checks:* {escape_mrkdwn(e.looks_at)}",
                                f"What meshbot checks: {e.looks_at}"))
        if e.fix:
            blocks.append(Block(f"*Fix:* {escape_mrkdwn(e.fix)}", f"Fix: {e.fix}", advice=True))
        if e.commands:
            cmds = "\n".join(e.commands)
            indented = "\n".join("    " + line for line in cmds.split("\n"))
            blocks.append(Block(f"```\n{escape_mrkdwn(cmds)}\n```", indented, code=(cmds,)))
        sections.append(
            Section(
                id=e.section,
                title=e.title,
                url=e.url,
                level=3 if e.parent else 2,
                parent=e.parent,
                blocks=tuple(blocks),
                guide="builtin",
                aliases=e.same_as,
                context=tuple(t for t in (titles.get(e.parent or ""), builtin.TOPICS.get(e.page)) if t),
                checks=(),  # added from the checks' declarations
                symptoms=e.symptoms,
            )
        )
    return sections


def merge(guide_sections: Sequence[Section], builtin_list: Sequence[Section],
          questions: Mapping[str | None, Sequence[str]] | None = None) -> list[Section]:
    """Guide sections win on text; built-in entries add symptoms, the checks their ids and signatures, and
    the questions asked (section id or alias → questions) their own field.

    An entry joins the guide section of its id or of one of its aliases (the same problem in another guide),
    and its ids become the section's aliases.
    """
    left = list(builtin_list)
    merged = []
    for s in guide_sections:
        found = [b for b in left if {s.id, *s.aliases} & {b.id, *b.aliases}]
        if found:
            left = [b for b in left if b not in found]
            ids = dict.fromkeys(i for b in found for i in (b.id, *b.aliases) if i != s.id and i not in s.aliases)
            # an entry's title says the problem in meshbot's words: one more way people put it
            titles = tuple(b.title for b in found if b.title != s.title)
            s = replace(s, symptoms=tuple(x for b in found for x in b.symptoms) + titles,
                        aliases=s.aliases + tuple(ids))
        merged.append(s)
    questions = questions or {}
    merged = [_with_checks(s) for s in merged + left]
    merged = [replace(s, asked=tuple(q for i in (s.id, *s.aliases) for q in questions.get(i, ()))) for s in merged]
    return _list_children(merged)


def _with_checks(s: Section) -> Section:
    """A section's checks and their signatures, from the checks' own declarations (one source)."""
    ids = (s.id, *s.aliases)
    mine = [c for c in _all_checks() if c.section in ids]
    causes = [(c, sigs) for c in _all_checks() for sub, sigs in getattr(c, "subsections", ()) if sub in ids]
    if not mine and not causes:
        return s
    checks = tuple(dict.fromkeys([*s.checks, *(c.id for c in mine), *(c.id for c, _ in causes)]))
    signatures = tuple(dict.fromkeys([*(sig for c in mine for sig in c.signatures),
                                      *(sig for _, sigs in causes for sig in sigs)]))
    return replace(s, checks=checks, signatures=signatures)


def _all_checks():
    from checks.catalog import ALL_CHECKS  # imported here: the catalogue loads every check module

    return ALL_CHECKS


def _list_children(sections: list[Section]) -> list[Section]:
    """A heading with no text of its own answers with links to its subsections."""
    out = []
    for s in sections:
        children = [c for c in sections if c.parent == s.id]
        if not s.blocks and children:
            block = Block(
                "\n".join(f"• <{c.url}|{escape_mrkdwn(c.title)}>" for c in children),
                "\n".join(f"- {c.title}: {c.url}" for c in children),
            )
            s = replace(s, blocks=(block,))
        out.append(s)
    return out


def load_index(
    guides: Sequence[str] = (),
    *,
    include_builtin: bool = True,
    home: str = DEFAULT_HOME,
    base_urls: dict[str, str] | None = None,
    cache_dir: str | None = None,
    timeout: float | None = None,
    fetcher: Fetcher | None = None,
    questions: Mapping[str | None, Sequence[str]] | None = None,
) -> Index:
    """Build an index from guides (paths or URLs) and the built-in knowledge.

    With no guides the index holds the built-in knowledge alone.  `home`
    replaces `{{home}}` in guides; `base_urls` maps a guide source to the docs
    page its section links point at, when its front matter does not say.
    URL guides are cached in memory for the process, and in `cache_dir` when
    given.  `questions` replaces the labelled questions (default: knowledge.labelled.load(), every file).
    Raises GuideError with a message fit for the user.
    """
    if fetcher is None and (cache_dir or timeout):
        fetcher = Fetcher(cache_dir=cache_dir, timeout=timeout or 10.0)
    fetcher = fetcher or _default_fetcher
    sections: dict[str, Section] = {}
    warnings: list[str] = []
    for source in guides:
        guide = read_guide(source, fetcher, home=home, base_url=(base_urls or {}).get(source))
        warnings.extend(guide.warnings)
        for s in guide.sections:
            first = sections.get(s.id) or _same_text(s, sections.values())
            if first is None:
                sections[s.id] = s
            elif s.guide != first.guide and s.guide not in first.also_in:
                # A heading two guides share is one section: the first guide's link, both texts; so is a
                # section two guides tell alike under different headings (its other id is an alias).
                # Its text is kept where it differs; a block both guides say alike is quoted once.
                new = [not any(fuzz.ratio(b.plain, a.plain) >= SAME_TEXT for a in first.blocks) for b in s.blocks]
                # "Example configuration:" goes with what it introduces
                new = [n and not (b.plain.endswith(":") and i + 1 < len(new) and not new[i + 1])
                       for i, (n, b) in enumerate(zip(new, s.blocks, strict=True))]
                extra = tuple(b for n, b in zip(new, s.blocks, strict=True) if n)
                note = Block(f"_Also in {escape_mrkdwn(s.guide)}:_ <{s.url}|{escape_mrkdwn(s.title)}>",
                             f"Also in {s.guide}: {s.title} ({s.url})")
                renamed = s.id != first.id
                sections[first.id] = replace(
                    first, blocks=first.blocks + extra + (note,), also_in=first.also_in + (s.guide,),
                    aliases=first.aliases + ((s.id, *s.aliases) if renamed else ()),
                    also_titles=first.also_titles + ((s.title,) if s.title != first.title else ()),
                    subheadings=first.subheadings + s.subheadings, context=first.context + s.context)
            # else a guide repeating its own heading: keep the first
    questions = labelled.load() if questions is None else questions
    index = Index(merge(list(sections.values()), builtin_sections() if include_builtin else [], questions),
                  questions.get(None, ()))
    index.warnings = tuple(warnings)
    return index


def _same_text(s: Section, sections) -> Section | None:
    """A section of another guide that says what `s` says (their texts SAME_TEXT alike), if any."""
    return next((t for t in sections if t.guide != s.guide and s.guide not in t.also_in and s.text and t.text
                 and fuzz.ratio(s.text, t.text, score_cutoff=SAME_TEXT)), None)


def excerpt_for_section(
    index: Index, section_id: str, question: str | None = None, *, plain: bool = False, prose: bool = False
) -> str | None:
    """The excerpt to attach to a check result for its guide section (None if unknown)."""
    s = index.section(section_id)
    if s is None:
        return None
    return excerpt(s, index._relevance(question) if question else None, plain=plain, prose=prose)


_default_fetcher = Fetcher()
