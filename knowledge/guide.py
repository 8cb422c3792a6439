"""Guides: fetch a Markdown guide, split it into sections, render them for Slack.

A guide is Markdown with optional YAML front matter and Liquid tags, as in
istio.io's sources.  Every heading starts a section; its body is cut into
blocks (a paragraph, a code block, one step of a numbered list) so an answer can
quote the few blocks that matter instead of the whole section.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urljoin

import httpx
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from handlers.markup import escape_mrkdwn

from .hugo import expand_href, hugo_plugin

DEFAULT_HOME = "https://istio.io"


class GuideError(Exception):
    """A guide could not be read or fetched; the message is fit to show a user."""


@dataclass(frozen=True)
class Block:
    """A unit of a section's body, rendered two ways."""

    mrkdwn: str
    plain: str
    code: tuple[str, ...] = ()  # the code blocks inside it
    prose: str | None = None  # plain text without its code (None: all of `plain` when there is no code)

    @property
    def words(self) -> str:
        return self.prose if self.prose is not None else ("" if self.code else self.plain)
    advice: bool = False  # built-in fix text: a finding's reply gives the check's own fix instead


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    url: str
    level: int
    parent: str | None = None
    blocks: tuple[Block, ...] = ()
    guide: str = ""  # the name of the guide it came from (guide_name), or "builtin"
    also_in: tuple[str, ...] = ()  # other guides with the same heading (one section, see DESIGN.md)
    aliases: tuple[str, ...] = ()  # the rule-derived id, when an explicit {#anchor} is the id
    checks: tuple[str, ...] = ()
    symptoms: tuple[str, ...] = ()  # built-in knowledge: how people report the problem
    signatures: tuple[str, ...] = ()  # from the checks' declarations: log lines, metrics, errors, ports
    also_titles: tuple[str, ...] = ()  # the headings of the same section in other guides, when they differ
    subheadings: tuple[str, ...] = ()  # the #### headings folded into it
    context: tuple[str, ...] = ()  # the headings above it, and its page's title and description (a topic)
    asked: tuple[str, ...] = ()  # labelled questions it answers (knowledge.labelled): how people put its problem

    @property
    def text(self) -> str:
        return "\n\n".join(b.plain for b in self.blocks)

    @property
    def code_blocks(self) -> tuple[str, ...]:
        return tuple(code for b in self.blocks for code in b.code)


@dataclass(frozen=True)
class Guide:
    source: str
    title: str
    url: str
    sections: tuple[Section, ...]
    warnings: tuple[str, ...] = ()  # parts that could not be read, each naming its file and line
    name: str = ""


def slugify(title: str) -> str:
    """The section-id contract: letters, digits, spaces and hyphens; spaces→hyphens."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return kept.replace(" ", "-")


# --- fetching ---------------------------------------------------------------


class Fetcher:
    """Reads guides from files and URLs; URLs are cached in memory and on disk.

    A stale disk copy is used when the network fails, so a restart during an
    outage still has its guides.
    """

    def __init__(
        self,
        *,
        client: httpx.Client | None = None,
        cache_dir: str | Path | None = None,
        timeout: float = 10.0,
        max_age: float = 3600.0,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_age = max_age
        self._memory: dict[str, tuple[float, str]] = {}

    def read(self, source: str) -> str:
        if source.startswith(("http://", "https://")):
            return self._get(source)
        path = Path(source).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GuideError(f"Cannot read guide file {source}: {exc.strerror or exc}.") from exc

    def _get(self, url: str) -> str:
        now = time.time()
        if url in self._memory and now - self._memory[url][0] < self.max_age:
            return self._memory[url][1]
        disk = self.cache_dir / (hashlib.sha256(url.encode()).hexdigest() + ".md") if self.cache_dir else None
        if disk and disk.exists() and now - disk.stat().st_mtime < self.max_age:
            text = disk.read_text(encoding="utf-8")
        else:
            try:
                text = self._download(url)
            except GuideError:
                if disk and disk.exists():  # stale beats nothing
                    text = disk.read_text(encoding="utf-8")
                else:
                    raise
            else:
                if disk:
                    disk.parent.mkdir(parents=True, exist_ok=True)
                    disk.write_text(text, encoding="utf-8")
        self._memory[url] = (now, text)
        return text

    def _download(self, url: str) -> str:
        client = self._client or httpx.Client(timeout=self._timeout, follow_redirects=True)
        try:
            response = client.get(url, timeout=self._timeout)
            response.raise_for_status()
            return response.text
        except httpx.TimeoutException as exc:
            raise GuideError(f"Timed out after {self._timeout:g}s fetching the guide at {url}.") from exc
        except httpx.HTTPStatusError as exc:
            raise GuideError(f"The guide at {url} answered HTTP {exc.response.status_code}; check the URL.") from exc
        except httpx.HTTPError as exc:
            raise GuideError(f"Cannot fetch the guide at {url}: {exc}.") from exc
        finally:
            if self._client is None:
                client.close()


# --- guides of several pages ---------------------------------------------------

# Folders whose pages are published somewhere known: folder name → (docs home, the folder's URL).
# istio.io serves content/en/docs/ops/common-problems/NAME/index.md at …/common-problems/NAME/
# (see PROVENANCE.md next to the pages); its site-relative links point into /latest.
KNOWN_FOLDERS = {
    "istio-common-problems": ("https://istio.io/latest", "https://istio.io/latest/docs/ops/common-problems/"),
}


def read_guide(source: str, fetcher: Fetcher, *, home: str = DEFAULT_HOME, base_url: str | None = None) -> Guide:
    """A guide from a file, a URL, or a folder of Hugo pages (one guide; each page links to its own URL)."""
    folder = Path(source).expanduser()
    if "://" in source or not folder.is_dir():
        return parse_guide(fetcher.read(source), source=source, base_url=base_url, home=home)
    name = guide_name(str(folder))
    known_home, known_base = KNOWN_FOLDERS.get(name, (None, None))
    home = known_home if known_home and home == DEFAULT_HOME else home
    base = base_url or known_base
    pages = sorted(p for p in folder.glob("*.md") if p.stem.upper() != p.stem)  # PROVENANCE.md, README.md: not pages
    title, sections, warnings = name, [], []
    for path in pages:
        text = fetcher.read(str(path))
        if path.stem == "_index":  # the folder's own page: its title names the guide
            title = str(_front_matter(text, str(path))[0].get("title") or name)
            if "\n#" not in "\n" + _front_matter(text, str(path))[1]:
                continue
        page = (urljoin(base, "" if path.stem == "_index" else f"{path.stem}/") if base else None)
        try:
            guide = parse_guide(text, source=str(path), base_url=page, home=home, name=name, topic=True)
        except GuideError as exc:  # one bad page is a warning; the others still answer
            warnings.append(str(exc))
            continue
        sections.extend(guide.sections)
        warnings.extend(guide.warnings)
    if not sections:
        raise GuideError(f"The guide folder {source} has no page with headings, so no sections to answer from.")
    return Guide(source=source, title=title, url=base or folder.resolve().as_uri(), sections=tuple(sections),
                 warnings=tuple(warnings), name=name)


# --- parsing ----------------------------------------------------------------

_LIQUID_TAG = re.compile(r"{%.*?%}", re.S)
_LIQUID_VAR = re.compile(r"{{\s*(\w+)\s*}}")
_ANCHOR = re.compile(r"\s*{#([\w-]+)}\s*$")  # Hugo's explicit heading anchor
_md = MarkdownIt("commonmark").use(hugo_plugin)
FOLD_LEVEL = 4  # headings this deep are folded into the section above them


def guide_name(source: str) -> str:
    """A guide's short name, as answers cite it: its file (or folder) name without extension."""
    tail = source.rstrip("/").rsplit("/", 1)[-1]
    return tail.rsplit(".", 1)[0] if tail.endswith((".md", ".markdown")) else tail or "guide"


def parse_guide(text: str, *, source: str = "", base_url: str | None = None, home: str = DEFAULT_HOME,
                name: str | None = None, topic: bool = False) -> Guide:
    """Parse guide Markdown into sections.

    The section URL base is, in order: `base_url`; the front matter's
    `docs_url`, `permalink` or `url`; the directory named by a `redirect_from`
    entry ending in index.html (istio.io lists its page's own path there); the
    source itself.  A section that cannot be read becomes a warning naming the
    file and line (Guide.warnings) and keeps its heading; it never fails the guide.
    With `topic` (a page of a guide of several pages) the page's title and description are the topic of
    every section on it.
    """
    meta, body, offset = _front_matter(text, source)
    home = home.rstrip("/")
    body = _LIQUID_TAG.sub("", body)
    body = _LIQUID_VAR.sub(lambda m: home if m.group(1) == "home" else m.group(0), body)
    page = base_url or _page_url(meta, home) or _source_url(source)
    name = name or guide_name(source)
    tokens = _md.parse(body)
    warnings: list[str] = [meta.pop("_warning")] if "_warning" in meta else []

    def where(tok: Token) -> str:
        return f"{source or '(text)'}:{(tok.map[0] if tok.map else 0) + offset + 1}"

    sections: list[Section] = []
    seen: dict[str, int] = {}
    stack: list[tuple[int, str, str]] = []  # (level, id, title) of enclosing headings
    page_topic = tuple(str(meta[k]) for k in ("title", "description") if topic and meta.get(k))
    i = 0
    while i < len(tokens):
        if tokens[i].type != "heading_open":
            i += 1
            continue
        level = int(tokens[i].tag[1])
        title = _render_inline(tokens[i + 1].children or [], "plain", page, home, links=False)
        explicit = _ANCHOR.search(title)
        if explicit:  # `{#gateway-mismatch}` is the id, as the guide's own links write it
            title = title[: explicit.start()]
        anchor = explicit.group(1) if explicit else slugify(title)
        key = anchor
        if anchor in seen:  # duplicate headings get -1, -2 … as renderers do
            seen[anchor] += 1
            key = f"{anchor}-{seen[anchor]}"
        seen.setdefault(anchor, 0)
        end = i + 3
        while end < len(tokens) and tokens[end].type != "heading_open":
            end += 1
        while stack and stack[-1][0] >= level:
            stack.pop()
        body_tokens = tokens[i + 3 : end]
        for tok in body_tokens:
            if (tok.meta or {}).get("unclosed"):
                warnings.append(f"{where(tok)}: a {{{{< text >}}}} block is never closed; read it to the end "
                                "of its list item or section")
        try:
            blocks = tuple(_blocks(body_tokens, page, home))
        except Exception as exc:  # noqa: BLE001 - one unreadable section must not lose the whole guide
            warnings.append(f"{where(tokens[i])}: could not read the text of \"{title}\" ({type(exc).__name__}: "
                            f"{exc}); its heading is kept without text")
            blocks = ()
        if level >= FOLD_LEVEL and sections:
            # A #### heading is a step of its parent's answer, not a problem of its own.
            heading = Block(f"*{escape_mrkdwn(title)}*", title)
            last = sections[-1]
            sections[-1] = replace(last, blocks=last.blocks + (heading,) + blocks,
                                   subheadings=last.subheadings + (title,))
            i = end
            continue
        sections.append(
            Section(
                id=key,
                title=title,
                url=f"{page}#{key}",
                level=level,
                parent=stack[-1][1] if stack else None,
                blocks=blocks,
                guide=name,
                aliases=(slugify(title),) if explicit and slugify(title) != key else (),
                context=tuple(t for _, _, t in stack) + page_topic,
            )
        )
        stack.append((level, key, title))
        i = end
    if not sections:
        raise GuideError(f"The guide {source or '(text)'} has no headings, so no sections to answer from.")
    return Guide(source=source, title=str(meta.get("title") or source), url=page, sections=tuple(sections),
                 warnings=tuple(warnings), name=name)


def _front_matter(text: str, source: str) -> tuple[dict, str, int]:
    """The front matter, the body, and how many lines come before the body (for warnings)."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text, 0
    for n, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            try:
                meta = yaml.safe_load("".join(lines[1:n])) or {}
            except yaml.YAMLError as exc:  # the sections are still readable: say so, go on without it
                mark = getattr(exc, "problem_mark", None)
                line_no = mark.line + 2 if mark else 1
                problem = getattr(exc, "problem", None) or type(exc).__name__
                meta = {"_warning": f"{source or '(text)'}:{line_no}: the front matter is not valid YAML "
                                    f"({problem}); read without it"}
            return (meta if isinstance(meta, dict) else {}), "".join(lines[n + 1 :]), n + 1
    return {}, text, 0


def _page_url(meta: dict, home: str) -> str | None:
    for key in ("docs_url", "permalink", "url"):
        if isinstance(meta.get(key), str):
            return urljoin(home + "/", meta[key])
    redirects = meta.get("redirect_from") or []
    dirs = [r[: -len("index.html")] for r in redirects if isinstance(r, str) and r.endswith("/index.html")]
    if dirs:
        return urljoin(home + "/", max(dirs, key=len))
    return None


def _source_url(source: str) -> str:
    if source.startswith(("http://", "https://")) or not source:
        return source
    return Path(source).resolve().as_uri()


def _blocks(tokens: list[Token], page: str, home: str) -> list[Block]:
    """Cut a section body into blocks: each top-level element, each list step."""
    blocks: list[Block] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        end = _close(tokens, i)
        if tok.type in ("ordered_list_open", "bullet_list_open"):
            number = int(tok.attrs.get("start", 1)) if tok.type == "ordered_list_open" else None
            j = i + 1
            while j < end:
                item_end = _close(tokens, j)
                marker = f"{number}." if number is not None else "•"
                blocks.append(_block(tokens[j + 1 : item_end], page, home, marker))
                number = number + 1 if number is not None else None
                j = item_end + 1
        elif tok.type != "html_block":  # html blocks are comments in these guides
            block = _block(tokens[i : end + 1], page, home)
            if block.plain.strip():
                blocks.append(block)
        i = end + 1
    return blocks


def _close(tokens: list[Token], i: int) -> int:
    """Index of the token closing tokens[i] (itself when it is self-contained)."""
    if tokens[i].nesting != 1:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _block(tokens: list[Token], page: str, home: str, marker: str = "") -> Block:
    code = tuple(t.content for t in tokens if t.type in ("fence", "code_block"))
    prose = _render([t for t in tokens if t.type not in ("fence", "code_block")], "plain", page, home, marker)
    return Block(
        mrkdwn=_render(tokens, "mrkdwn", page, home, marker),
        plain=_render(tokens, "plain", page, home, marker),
        code=code,
        prose=prose if code else None,
    )


# --- rendering ----------------------------------------------------------------


def _escape(text: str, style: str) -> str:
    if style != "mrkdwn":
        return text
    return escape_mrkdwn(text)


def _render(tokens: list[Token], style: str, page: str, home: str, marker: str = "") -> str:
    """Render block tokens as Slack mrkdwn or plain text."""
    out: list[str] = []
    lists: list[int | None] = []  # counters of open nested lists (None: bullets)
    prefix = marker + " " if marker else ""
    indent = "   " if marker else ""
    quote = ""
    for tok in tokens:
        pad = indent + "   " * max(len(lists) - 1, 0)
        if tok.type == "bullet_list_open":
            lists.append(None)
        elif tok.type == "ordered_list_open":
            lists.append(int(tok.attrs.get("start", 1)))
        elif tok.type.endswith("_list_close"):
            lists.pop()
        elif tok.type == "list_item_open":
            n = lists[-1]
            prefix = pad + ("•" if n is None else f"{n}.") + " "
            if n is not None:
                lists[-1] = n + 1
        elif tok.type == "blockquote_open":
            quote = "> " if style == "mrkdwn" else "  "
        elif tok.type == "blockquote_close":
            quote = ""
        elif tok.type == "inline":
            text = _render_inline(tok.children or [], style, page, home)
            lead = prefix or (pad + ("   " if lists else ""))
            out.append(quote + lead + text.replace("\n", "\n" + quote + " " * len(lead)))
            prefix = ""
        elif tok.type in ("fence", "code_block"):
            body = _escape(tok.content.rstrip("\n"), style)
            if style == "mrkdwn":
                out.append(f"```\n{body}\n```")
            else:
                lead = pad + ("   " if lists else "") + "    "
                out.append("\n".join(lead + line for line in body.split("\n")))
    return "\n".join(out)


def _render_inline(children: list[Token], style: str, page: str, home: str, links: bool = True) -> str:
    parts: list[str] = []
    href: str | None = None
    start = 0
    for tok in children:
        if tok.type == "text":
            parts.append(_escape(tok.content, style))
        elif tok.type == "code_inline":
            parts.append(f"`{_escape(tok.content, style)}`")
        elif tok.type in ("softbreak",):
            parts.append(" ")
        elif tok.type == "hardbreak":
            parts.append("\n")
        elif tok.type in ("strong_open", "strong_close"):
            parts.append("*" if style == "mrkdwn" else "")
        elif tok.type in ("em_open", "em_close"):
            parts.append("_" if style == "mrkdwn" else "")
        elif tok.type == "image":
            parts.append(_escape(tok.content, style))
        elif tok.type == "link_open":
            href = _absolute(str(tok.attrs.get("href", "")), page, home)
            start = len(parts)
        elif tok.type == "link_close" and href is not None:
            text = "".join(parts[start:])
            if links and style == "mrkdwn":
                parts[start:] = [f"<{href}|{text}>" if text and text != href else f"<{href}>"]
            elif links and text != href:
                parts[start:] = [f"{text} ({href})" if text else href]
            href = None
    return "".join(parts).strip()


def _absolute(href: str, page: str, home: str) -> str:
    href = expand_href(href)
    if href.startswith("#"):
        return page.split("#")[0] + href
    if href.startswith("/"):
        return home + href
    if href and "://" not in href and not href.startswith("mailto:"):
        return urljoin(page, href)  # Hugo pages link to their neighbours relatively (`../injection/`)
    return href
