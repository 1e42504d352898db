"""When two display names look alike: a fold after Unicode TR39 confusables, case and blanks.

The leaderboard shows a user's display name next to their usage, and ``anonymous #<rank>``
for users without one. A name that merely *looks* like another one — ``аlice`` with a Cyrillic
``а``, ``ａｌｉｃｅ`` in fullwidth letters, ``al\u200bice`` with a zero-width space, ``AIice``
with a capital I — is an impersonation, so names are compared by :func:`fold`, never as typed:

1. **NFKC**: compatibility forms become plain ones (fullwidth ``ａ`` → ``a``, ``ﬁ`` → ``fi``,
   a no-break space → a space).
2. **Invisible characters** (format characters such as zero-width joiners and spaces,
   direction marks, variation selectors, the combining grapheme joiner) are dropped;
   **blanks** (every space separator, the Hangul fillers, the Braille blank) become one space;
   runs of spaces become one, and the ends are trimmed.
3. **The UTS #39 skeleton**: NFD, each character replaced by its prototype in the Unicode
   confusables table, NFD again. This runs on the case the user typed, because capital ``I``
   is confusable with ``l`` while its lower case ``i`` is not.
4. **Case**: casefold, NFKC, and the skeleton again (a Cyrillic ``А`` became ``A`` in step 3
   and is ``a`` now; a Cyrillic ``а`` is ``a`` by the table).
5. **One bridge**: ``i`` becomes ``l``. Step 3 makes ``I`` a ``l`` and step 4 makes it an
   ``i``; a fold that is both case-insensitive and catches ``AIice`` must treat ``i``, ``I``
   and ``l`` as one letter. Uniting every such pair would be worse: the same closure over all
   scripts joins ``r``, ``t``, ``u``, ``y`` and ``z`` (through Greek and Cyrillic capitals),
   so this is the only one, and the price is that ``bili`` and ``bill`` collide.

Accents stay: ``é`` (one code point or ``e`` plus a combining acute) folds apart from ``e``,
so ``Zoë`` and ``Zoe`` are different names, as TR39 has it. The reserved prefix is checked
stricter (:func:`is_reserved`): there, combining marks are dropped too, so a dot under one
letter does not make ``anonymous #1`` available.

The table is the TR39 ``confusables.txt`` data shipped by ``confusable-homoglyphs`` (pinned,
because stored keys depend on it). That package keeps each confusable pair in both directions,
not the file's source → prototype direction; every group it lists is a star around its
prototype (checked by ``tests/ledger/test_profile_names.py``), so the prototype is the group's
centre, or its one multi-character member, and a group of two takes its smaller member (any
one member gives the same comparisons). The table is read on first use and cached: a quick
CLI command that never compares names never pays for the 900 kB of JSON.
"""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from functools import cache
from importlib import resources

#: The package that ships the TR39 confusables table, and its file.
DATA_PACKAGE = "confusable_homoglyphs"
DATA_FILE = "confusables.json"
#: Display names the leaderboard uses for users without one: ``anonymous #<rank>``.
ANONYMOUS_PREFIX = "anonymous #"
#: Invisible code points that are not format characters (category Cf, also dropped).
_INVISIBLE = frozenset(
    (
        *(0x034F, 0x17B4, 0x17B5, *range(0x180B, 0x1810)),  # grapheme joiner, Khmer, Mongolian
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0100, 0xE01F0),  # variation selectors supplement
    )
)
#: Characters that show as a blank without being space separators.
_BLANK = frozenset([0x115F, 0x1160, 0x2800, 0x3164, 0xFFA0])
#: Left-to-right marks that ``confusable-homoglyphs`` wraps around right-to-left characters.
_LRM = "\u200e"


def _unwrap(text: str) -> str:
    if len(text) > 2 and text[0] == text[-1] == _LRM:
        return text[1:-1]
    return text


@cache
def table() -> dict[str, str]:
    """Each confusable character's prototype (read once, on first use)."""
    raw = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
    edges: dict[str, set[str]] = defaultdict(set)
    for source, homoglyphs in json.loads(raw).items():
        for glyph in homoglyphs:
            a, b = _unwrap(source), _unwrap(glyph["c"])
            edges[a].add(b)
            edges[b].add(a)
    prototype: dict[str, str] = {}
    for group in groups(edges):
        longer = [m for m in group if len(m) > 1]
        centre = [m for m in group if len(edges[m]) == len(group) - 1]
        proto = longer[0] if longer else min(centre if len(group) > 2 else group)
        for member in group:
            if len(member) == 1 and member != proto:
                prototype[member] = proto
    # A prototype of several characters may hold characters that have a prototype themselves;
    # map those too, so applying the table once is enough.
    for _ in range(4):
        changed = {k: _map(v, prototype) for k, v in prototype.items()}
        if changed == prototype:
            break
        prototype = changed
    return prototype


def groups(edges: dict[str, set[str]]) -> list[set[str]]:
    """The connected groups of the confusables graph."""
    seen: set[str] = set()
    found: list[set[str]] = []
    for start in edges:
        if start in seen:
            continue
        group: set[str] = set()
        todo = [start]
        while todo:
            member = todo.pop()
            if member not in group:
                group.add(member)
                todo.extend(edges[member] - group)
        seen |= group
        found.append(group)
    return found


def _map(text: str, prototype: dict[str, str]) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototype.get(c, c) for c in decomposed))


def skeleton(text: str) -> str:
    """The UTS #39 skeleton: NFD, each character by its confusables prototype, NFD."""
    return _map(text, table())


def _visible(text: str) -> str:
    kept: list[str] = []
    for char in text:
        code = ord(char)
        category = unicodedata.category(char)
        if category == "Cf" or code in _INVISIBLE:
            continue
        blank = char.isspace() or category[0] == "Z" or code in _BLANK
        kept.append(" " if blank else char)
    return " ".join("".join(kept).split())


@cache
def _small_capital(char: str) -> str:
    # "LATIN LETTER SMALL CAPITAL N" (ɴ, ᴀ, ꜱ …) reads as its letter, but the confusables
    # data maps few of them; the Unicode name says which letter each one is.
    name = unicodedata.name(char, "")
    prefix = "LATIN LETTER SMALL CAPITAL "
    letter = name[len(prefix) :]
    return letter.lower() if name.startswith(prefix) and len(letter) == 1 else char


def _plain_capitals(text: str) -> str:
    return "".join(_small_capital(c) if ord(c) > 0x7F else c for c in text)


def fold(text: str) -> str:
    """The key two names are compared by: equal keys look alike (see the module docstring)."""
    shown = _visible(_plain_capitals(unicodedata.normalize("NFKC", text)))
    cased = unicodedata.normalize("NFKC", skeleton(shown).casefold())
    return skeleton(_visible(cased)).replace("i", "l")


def _unmarked(key: str) -> str:
    return "".join(c for c in key if unicodedata.category(c) not in ("Mn", "Me"))


def is_reserved(name: str) -> bool:
    """True when ``name`` looks like the leaderboard's ``anonymous #<rank>``.

    Every name whose fold, without combining marks, starts like the fold of ``anonymous`` is
    reserved, not only ``anonymous #…``: look-alikes of ``#`` (``♯``, ``⌗``) and of the digits
    are too many to list, and a user called "Anonymous" next to ``anonymous #3`` misleads too.
    """
    word = ANONYMOUS_PREFIX.split()[0]
    return _unmarked(fold(name)).startswith(_unmarked(fold(word)))
