"""How a free-text job title becomes a level and a function: one table of phrases, read by one
longest-match pass, and three precedence rules. No I/O; the title text itself is never stored.

The rules, in the order they apply:
1. Phrases, not substrings: the longest phrase in the table wins where phrases overlap, so
   "vice president" is a VP (not the "president" inside it), "chief of staff" is not a chief, and
   "account manager", "product owner" and "partner manager" are what they say.
2. Someone else's rank does not count: a phrase after "to", "for the" or "office of" ("Assistant to
   the CEO") gives neither level nor function.
3. The holder's rank comes first. A title in parts ("VP, Sales", "Employee, Chief Operating
   Officer") takes its level from the first part that names one; a later part can raise it only
   when the first is an officer's rank (VP or above: "EVP, Chief Revenue Officer"), because in the
   "Rank, Department" form a later chief title names the office the holder works in.
Within the part that decides, the highest level wins ("Vice President and General Manager" is a
VP). A managing director is the head of the company unless the title also names a function
("Managing Director, Trading": the banking rank, a VP). The function is the first one named,
except that a domain word beats a generic role noun ("Security Engineer" is IT, "Sales Engineer"
sales) and both beat general management ("Co-founder and CTO" is engineering).

Languages: English, plus the common French, German, Spanish, Italian and Portuguese titles (accents
folded; German compounds matched by their parts, e.g. "Vertriebsleiter" = sales + director)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.vocabulary import FUNCTIONS, TITLE_LEVELS

# Function strength: which named function wins when a title names several.
_DOMAIN, _ROLE_NOUN, _GENERAL = 2, 1, 0

# phrase | level | function | how it matches. Levels and functions from core.vocabulary ("-": none);
# function strength is _DOMAIN unless the phrase is a generic role noun or general management.
# Rows match whole words, except "prefix" rows (the first part of a longer compound word) and
# "suffix" rows (its last part, or the whole word), for German compounds.
_TABLE = """
chief                         | c_level  | -           |
chief executive               | c_level  | executive   | general
chief information officer     | c_level  | it          |
chief data officer            | c_level  | it          |
chief of staff                | director | executive   | general
ceo                           | c_level  | executive   | general
cfo                           | c_level  | finance     |
coo                           | c_level  | operations  |
cto                           | c_level  | engineering |
cio                           | c_level  | it          |
cmo                           | c_level  | marketing   |
cro                           | c_level  | sales       |
ciso                          | c_level  | it          |
chro                          | c_level  | hr          |
cdo                           | c_level  | it          |
cpo                           | c_level  | -           |
president                     | c_level  | executive   | general
presidente                    | c_level  | executive   | general
president directeur general   | c_level  | executive   | general
proprietor                    | c_level  | executive   | general
inhaber                       | c_level  | executive   | general
gerant                        | c_level  | executive   | general
socio                         | c_level  | executive   | general
founder                       | c_level  | executive   | general
cofounder                     | c_level  | executive   | general
owner                         | c_level  | executive   | general
product owner                 | ic       | product     |
process owner                 | ic       | operations  |
chairman                      | c_level  | executive   | general
chairwoman                    | c_level  | executive   | general
chairperson                   | c_level  | executive   | general
chair                         | c_level  | executive   | general
partner                       | c_level  | executive   | general
business partner              | ic       | -           |
partner manager               | manager  | sales       |
partner marketing             | -        | marketing   |
executive director            | c_level  | executive   | general
managing director             | c_level  | executive   | general, vp when a function is named
directeur general             | c_level  | executive   | general
direttore generale            | c_level  | executive   | general
gerente general               | c_level  | executive   | general
amministratore delegato       | c_level  | executive   | general
consejero delegado            | c_level  | executive   | general
geschaftsfuhrer               | c_level  | executive   | general
vice president                | vp       | -           |
vicepresidente                | vp       | -           |
vice presidente               | vp       | -           |
vp                            | vp       | -           |
svp                           | vp       | -           |
evp                           | vp       | -           |
avp                           | vp       | -           |
head of                       | vp       | -           |
general counsel               | vp       | legal       |
deputy general counsel        | director | legal       |
associate general counsel     | director | legal       |
director                      | director | -           |
directeur                     | director | -           |
direttore                     | director | -           |
diretor                       | director | -           |
directora                     | director | -           |
leiter                        | director | -           | suffix
teamleiter                    | manager  | -           | suffix
general manager               | director | executive   | general
general and operations manager| director | operations  |
manager                       | manager  | -           |
mgr                           | manager  | -           |
supervisor                    | manager  | -           |
first line supervisor         | manager  | -           |
lead                          | manager  | -           |
team lead                     | manager  | -           |
team leader                   | manager  | -           |
leader                        | manager  | -           |
chef                          | manager  | -           |
tech lead                     | manager  | engineering |
controller                    | manager  | finance     |
treasurer                     | manager  | finance     |
responsable                   | manager  | -           |
gerente                       | manager  | -           |
jefe                          | manager  | -           |
office manager                | manager  | operations  |
category manager              | manager  | procurement |
account manager               | ic       | sales       |
territory manager             | ic       | sales       |
customer success manager      | ic       | sales       |
associate product manager     | ic       | product     |
executive assistant           | ic       | -           |
employee                      | ic       | -           |
sales                         | -        | sales       |
salesperson                   | -        | sales       |
account executive             | ic       | sales       |
business development          | -        | sales       |
revenue                       | -        | sales       |
commercial                    | -        | sales       |
comercial                     | -        | sales       |
commerciale                   | -        | sales       |
ventas                        | -        | sales       |
vertrieb                      | -        | sales       |
vertrieb                      | -        | sales       | prefix
channel                       | -        | sales       |
go to market                  | -        | sales       |
retail                        | -        | sales       |
customer                      | -        | sales       |
customer success              | -        | sales       |
solutions engineer            | -        | sales       |
sales operations              | -        | sales       |
marketing                     | -        | marketing   |
marketer                      | -        | marketing   |
brand                         | -        | marketing   |
growth                        | -        | marketing   |
communications                | -        | marketing   |
public relations              | -        | marketing   |
advertising                   | -        | marketing   |
promotions                    | -        | marketing   |
copywriter                    | -        | marketing   |
content                       | -        | marketing   |
demand generation             | -        | marketing   |
seo                           | -        | marketing   |
social media                  | -        | marketing   |
graphic                       | -        | marketing   |
market research               | -        | marketing   |
product marketing             | -        | marketing   |
digital marketing             | -        | marketing   |
finance                       | -        | finance     |
financial                     | -        | finance     |
financier                     | -        | finance     |
financiero                    | -        | finance     |
finanz                        | -        | finance     | prefix
accounting                    | -        | finance     |
accountant                    | -        | finance     |
comptable                     | -        | finance     |
contador                      | -        | finance     |
buchhalt                      | -        | finance     | prefix
bookkeeper                    | -        | finance     |
bookkeeping                   | -        | finance     |
audit                         | -        | finance     |
auditor                       | -        | finance     |
auditing                      | -        | finance     |
tax                           | -        | finance     |
treasury                      | -        | finance     |
payroll                       | -        | finance     |
billing                       | -        | finance     |
budget                        | -        | finance     |
credit                        | -        | finance     |
loan                          | -        | finance     |
risk                          | -        | finance     |
investment                    | -        | finance     |
actuary                       | -        | finance     |
trader                        | -        | finance     |
trading                       | -        | finance     |
fp and a                      | -        | finance     |
accounts payable              | -        | finance     |
accounts receivable           | -        | finance     |
quantitative                  | -        | finance     |
equity                        | -        | finance     |
markets                       | -        | finance     |
contable                      | -        | finance     |
financeiro                    | -        | finance     |
financiera                    | -        | finance     |
amministrativo                | -        | finance     |
operations                    | -        | operations  |
operating                     | -        | operations  |
ops                           | -        | operations  |
supply chain                  | -        | operations  |
logistics                     | -        | operations  |
logistician                   | -        | operations  |
warehouse                     | -        | operations  |
facilities                    | -        | operations  |
production                    | -        | operations  |
plant                         | -        | operations  |
manufacturing                 | -        | operations  |
transportation                | -        | operations  |
dispatcher                    | -        | operations  |
quality control               | -        | operations  |
customer service              | -        | operations  |
customer support              | -        | operations  |
project                       | -        | operations  |
program                       | -        | operations  |
sustainability                | -        | operations  |
projet                        | -        | operations  |
proyecto                      | -        | operations  |
shipping                      | -        | operations  |
receiving                     | -        | operations  |
inventory                     | -        | operations  |
distribution                  | -        | operations  |
maintenance                   | -        | operations  |
machinist                     | -        | operations  |
shift                         | -        | operations  |
customer care                 | -        | operations  |
kundenservice                 | -        | operations  |
engineering                   | -        | engineering |
software                      | -        | engineering |
software                      | -        | engineering | prefix
logiciel                      | -        | engineering |
hardware                      | -        | engineering |
technology                    | -        | engineering |
devops                        | -        | engineering |
machine learning              | -        | engineering |
data science                  | -        | engineering |
research                      | -        | engineering |
qa                            | -        | engineering |
quality assurance             | -        | engineering |
programmer                    | -        | engineering |
scientific                    | -        | engineering |
development                   | -        | engineering | role noun
engineer                      | -        | engineering | role noun
ingenieur                     | -        | engineering | role noun
developer                     | -        | engineering | role noun
entwickler                    | -        | engineering | role noun, suffix
scientist                     | -        | engineering | role noun
architect                     | -        | engineering | role noun
it                            | -        | it          |
information technology        | -        | it          |
information systems           | -        | it          |
information security          | -        | it          |
cybersecurity                 | -        | it          |
penetration                   | -        | it          |
reseau                        | -        | it          |
security                      | -        | it          |
network                       | -        | it          |
infrastructure                | -        | it          |
systems                       | -        | it          |
database                      | -        | it          |
computer                      | -        | it          | role noun
help desk                     | -        | it          |
digital                       | -        | it          |
legal                         | -        | legal       |
counsel                       | -        | legal       |
lawyer                        | -        | legal       |
attorney                      | -        | legal       |
paralegal                     | -        | legal       |
compliance                    | -        | legal       |
regulatory                    | -        | legal       |
privacy                       | -        | legal       |
contract                      | -        | legal       | role noun
contracts                     | -        | legal       |
legal operations              | -        | legal       |
litigation                    | -        | legal       |
avvocato                      | -        | legal       |
abogado                       | -        | legal       |
avocat                        | -        | legal       |
advogado                      | -        | legal       |
rechtsanwalt                  | -        | legal       |
procurement                   | -        | procurement |
purchasing                    | -        | procurement |
sourcing                      | -        | procurement |
buyer                         | -        | procurement |
vendor                        | -        | procurement |
supplier                      | -        | procurement |
achats                        | -        | procurement |
compras                       | -        | procurement |
einkauf                       | -        | procurement |
einkauf                       | -        | procurement | prefix
hr                            | -        | hr          |
human resources               | -        | hr          |
ressources humaines           | -        | hr          |
recursos humanos              | -        | hr          |
labor relations               | -        | hr          |
labour relations              | -        | hr          |
employee relations            | -        | hr          |
total rewards                 | -        | hr          |
personal                      | -        | hr          | prefix
personalization               | -        | -           |
personalisation               | -        | -           |
people                        | -        | hr          |
people operations             | -        | hr          |
talent                        | -        | hr          |
recruiter                     | -        | hr          |
recruiting                    | -        | hr          |
recruitment                   | -        | hr          |
compensation                  | -        | hr          |
benefits                      | -        | hr          |
training                      | -        | hr          |
product                       | -        | product     |
ux                            | -        | product     |
"""

# Abbreviations and spellings read as their full words before matching.
_SPELLINGS = {"sr": "senior", "jr": "junior", "snr": "senior", "dir": "director", "co": ""}  # "": dropped
# What follows names someone else ("Assistant to the CEO", "Chief of Staff, Office of the CTO").
_SUBORDINATE = (("to",), ("for", "the"), ("office", "of"))
_SEGMENT_BREAK = re.compile(r"[,;|()]|\s[-–—]\s")


@dataclass(frozen=True)
class _Rule:
    level: str | None
    function: str | None
    strength: int
    qualified_level: str | None  # the level when the title also names a function (managing director)


def _parse_table() -> tuple[dict[tuple[str, ...], _Rule], dict[str, _Rule], dict[str, _Rule]]:
    words: dict[tuple[str, ...], _Rule] = {}
    prefixes: dict[str, _Rule] = {}
    suffixes: dict[str, _Rule] = {}
    for line in _TABLE.strip().splitlines():
        phrase, level, function, notes = (cell.strip() for cell in line.split("|"))
        level_or_none = None if level == "-" else level
        function_or_none = None if function == "-" else function
        if level_or_none not in (None, *TITLE_LEVELS) or function_or_none not in (None, *FUNCTIONS):
            raise ValueError(f"title table: unknown level or function in {line!r}")
        strength = _ROLE_NOUN if "role noun" in notes else _GENERAL if "general" in notes else _DOMAIN
        qualified = "vp" if "vp when a function is named" in notes else None
        rule = _Rule(level_or_none, function_or_none, strength, qualified)
        if "prefix" in notes:
            prefixes[phrase] = rule
        elif "suffix" in notes:
            suffixes[phrase] = rule
        else:
            words[tuple(phrase.split())] = rule
    return words, prefixes, suffixes


_WORDS, _PREFIXES, _SUFFIXES = _parse_table()
_LONGEST = max(len(phrase) for phrase in _WORDS)


@dataclass(frozen=True)
class _Match:
    rule: _Rule
    segment: int


def _fold(title: str) -> str:
    text = unicodedata.normalize("NFKD", title.lower())
    text = "".join(c for c in text if not unicodedata.combining(c)).replace("ß", "ss")
    text = re.sub(r"\bv\.\s?p\b\.?", "vp", text).replace("&", " and ")
    return text


def _tokens(segment: str) -> list[str]:
    out = []
    for word in re.findall(r"[a-z0-9]+", segment):
        word = _SPELLINGS.get(word, word)
        if word:
            out.append(word)
    return out


def _compound(token: str) -> list[_Rule]:
    """The rules a compound word's parts match, the longest first part and the longest last part
    ("vertriebsleiter": sales, director; "teamleiter": a manager, not a "leiter")."""
    first = [stem for stem in _PREFIXES if token.startswith(stem) and len(token) > len(stem)]
    last = [stem for stem in _SUFFIXES if token.endswith(stem)]
    found = [_PREFIXES[max(first, key=len)]] if first else []
    return found + ([_SUFFIXES[max(last, key=len)]] if last else [])


def _matches(title: str) -> list[_Match]:
    """Every phrase of the table the title holds, longest first where they overlap, without those
    that name someone else."""
    found: list[_Match] = []
    for index, segment in enumerate(s for s in _SEGMENT_BREAK.split(_fold(title)) if s.strip()):
        tokens = _tokens(segment)
        at = 0
        while at < len(tokens):
            if any(tuple(tokens[at : at + len(marker)]) == marker for marker in _SUBORDINATE):
                break
            for length in range(min(_LONGEST, len(tokens) - at), 0, -1):
                rule = _WORDS.get(tuple(tokens[at : at + length]))
                if rule is not None:
                    found.append(_Match(rule, index))
                    at += length
                    break
            else:
                found.extend(_Match(rule, index) for rule in _compound(tokens[at]))
                at += 1
    return found


def _rank(level: str) -> int:
    return TITLE_LEVELS.index(level)


def normalize_title(title: str) -> tuple[str, str]:
    """Map a free-text job title to (title_level, function); "ic" and "other" when it names neither."""
    found = _matches(title)
    functions = [m.rule for m in found if m.rule.function is not None]
    function = max(functions, key=lambda rule: rule.strength).function if functions else None
    ranked = [m for m in found if m.rule.level is not None]
    if not ranked:
        return "ic", function or "other"
    holder_segment = ranked[0].segment
    names_function = any(rule.strength != _GENERAL for rule in functions)

    def level_of(rule: _Rule) -> str:
        assert rule.level is not None
        return rule.qualified_level if rule.qualified_level and names_function else rule.level

    level = max((level_of(m.rule) for m in ranked if m.segment == holder_segment), key=_rank)
    if _rank(level) >= _rank("vp"):
        level = max((level_of(m.rule) for m in ranked), key=_rank)
    return level, function or "other"
