"""Person names as people write them: a title or role word, given name, middle names or
initials, surname, suffix; parsed by nameparser, compared with nickname knowledge from the
`nicknames` package (a hand-curated table of English given names and their nicknames) and
Jaro-Winkler similarity from rapidfuzz.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

from nameparser import HumanName
from nameparser.config import Constants
from rapidfuzz.distance import JaroWinkler

#: Words that say which office a person holds (before a name, or in a record's title), and the
#: chamber it sits in: a delegate and a resident commissioner sit in the House and are called
#: `Rep.` too. Where a mention says one chamber, a person of the other is not the one meant.
ROLE_WORDS = {"sen": "senate", "senator": "senate", "rep": "house", "representative": "house",
              "congressman": "house", "congresswoman": "house", "delegate": "house",
              "commissioner": "house"}
_CONSTANTS = Constants()  # nameparser's own, with the role words as titles
_CONSTANTS.titles.add(*ROLE_WORDS)
#: Two given names whose Jaro-Winkler similarity reaches this are one name spelled two ways
#: (`Jon`/`John` 0.933, `Sara`/`Sarah` 0.960, `Katherine`/`Catherine` 0.926; `Mary`/`Mark`
#: 0.883 stays apart, and so does `Steven`/`Stephen` at 0.894 unless a nickname joins them).
GIVEN_NAME_SIMILARITY = 0.9


def fold(text: str) -> str:
    """`text` lower-cased, its accents and full stops dropped (`Hernández` -> `hernandez`)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().replace(".", "")


@dataclass(frozen=True)
class PersonName:
    """A person's name in parts, each folded: `role` (the chamber of ROLE_WORDS, or None),
    `given` (or None: a surname alone, as in `Sen. Rounds`), `middle` names or initials,
    `surnames` (every word of the surname: `hernandez rivera`)."""

    role: str | None
    given: str | None
    middle: tuple[str, ...]
    surnames: tuple[str, ...]


def parse_person(text: str) -> PersonName:
    """The parts of a person's name as written (`Rep. Lee's` and `Henry C. Johnson, Jr.`
    included: a possessive and a suffix are dropped)."""
    name = HumanName(text.strip().removesuffix("'s").removesuffix("’s"), constants=_CONSTANTS)
    role = ROLE_WORDS.get(fold(name.title).strip(), None)
    return PersonName(role, fold(name.first) or None,
                      tuple(fold(part) for part in name.middle_list),
                      tuple(fold(name.last).split()))


@functools.lru_cache(maxsize=1)
def _nicknamer():
    from nicknames import NickNamer  # its table loads once, on first use

    return NickNamer()


def canonical_names(given: str) -> set[str]:
    """The full given names a folded given name is a nickname of (`bernie` -> {`bernard`}),
    from the `nicknames` table; empty for a name it does not hold as a nickname."""
    return _nicknamer().canonicals_of(given)


@functools.lru_cache(maxsize=65536)
def same_given_name(said: str, recorded: str) -> bool:
    """True when `said` can be `recorded`: equal, an initial of it, a nickname of it (either
    way: `maggie`/`margaret`, `bernie`/`bernard`), or spelled nearly the same."""
    if said == recorded or (len(said) == 1 and recorded.startswith(said)):
        return True
    if recorded in canonical_names(said) or said in canonical_names(recorded):
        return True
    if canonical_names(said) & canonical_names(recorded):  # steve: both
        return True
    return JaroWinkler.similarity(said, recorded) >= GIVEN_NAME_SIMILARITY
