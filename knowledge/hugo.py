"""Hugo shortcodes for markdown-it, as istio.io's current pages use them.

``{{< text bash >}}…{{< /text >}}`` is istio.io's code block: it becomes a
fence token, found by markdown-it's own block machinery, so a block indented
under a list item stays in that item (a ``# comment`` line inside it is code,
not a heading).  Other block shortcodes on a line of their own (``{{< tip >}}``)
are wrappers: their markers are dropped, what they wrap is kept.  Inline ones
(``{{< gloss >}}term{{< /gloss >}}``) are dropped too, and the GitHub link
shortcodes become the repository's URL.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline

_OPEN_TEXT = re.compile(r"{{<\s*text\s+([^>]*?)\s*>}}\s*$")
_CLOSE_TEXT = re.compile(r"{{<\s*/text\s*>}}\s*$")
_WRAPPER = re.compile(r"{{<\s*/?\s*[\w-]+[^>]*>}}\s*$")
_INLINE = re.compile(r"{{<\s*(/?)\s*([\w-]+)[^>]*>}}")
GITHUB = {
    "github_tree": "https://github.com/istio/istio/tree/master",
    "github_blob": "https://github.com/istio/istio/blob/master",
    "github_file": "https://raw.githubusercontent.com/istio/istio/master",
}


def expand_href(href: str) -> str:
    """Link destinations are not inline content, so their shortcodes are resolved here."""
    return _INLINE.sub(lambda m: GITHUB.get(m.group(2), ""), href)


def _line(state: StateBlock, n: int) -> str:
    return state.src[state.bMarks[n] + state.tShift[n]: state.eMarks[n]]


def _text_block(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if state.sCount[start] - state.blkIndent >= 4:
        return False
    opened = _OPEN_TEXT.match(_line(state, start))
    if not opened:
        return False
    if silent:
        return True
    line, closed = start + 1, False
    while line < end:
        if state.bMarks[line] + state.tShift[line] < state.eMarks[line] and state.sCount[line] < state.blkIndent:
            break  # dedented out of the list item that holds the block
        if _CLOSE_TEXT.match(_line(state, line)):
            closed = True
            break
        line += 1
    token = state.push("fence", "code", 0)
    token.info = opened.group(1).split()[-1] if opened.group(1) else ""
    token.content = state.getLines(start + 1, line, state.sCount[start], True)
    token.markup = "```"
    token.map = [start, line + closed]
    token.meta = {"unclosed": not closed}
    state.line = line + closed
    return True


def _wrapper(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if state.sCount[start] - state.blkIndent >= 4 or not _WRAPPER.match(_line(state, start)):
        return False
    if not silent:
        state.line = start + 1
    return True


def _inline(state: StateInline, silent: bool) -> bool:
    if not state.src.startswith("{{<", state.pos):
        return False
    found = _INLINE.match(state.src, state.pos)
    if not found:
        return False
    if not silent and found.group(2) in GITHUB and not found.group(1):
        state.push("text", "", 0).content = GITHUB[found.group(2)]
    state.pos = found.end()
    return True


def hugo_plugin(md: MarkdownIt) -> None:
    alt = ["paragraph", "reference", "blockquote", "list"]
    md.block.ruler.before("fence", "hugo_text", _text_block, {"alt": alt})
    md.block.ruler.before("fence", "hugo_wrapper", _wrapper, {"alt": alt})
    md.inline.ruler.before("text", "hugo_inline", _inline)
