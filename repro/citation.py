"""How a paper is cited: ``citation:`` in paper.yaml (title, authors, venue, year and, only where confirmed,
``arxiv``, ``doi``, ``url``), its BibTeX entry (``repro cite``) and the link reports give the paper.

Reports cite the paper from here, never from a text file beside the checkout, so a report rendered from
an unchanged database is byte-identical wherever the checkout lies."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ARXIV = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")
DOI = re.compile(r"^10\.\d{4,9}/\S+$")


class Citation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1)
    authors: list[str] = Field(min_length=1)  # each as "Given Family", in the paper's order
    venue: str = Field(min_length=1)  # the journal, proceedings, or "arXiv preprint"
    year: int = Field(ge=1900, le=2100)
    entry: Literal["article", "inproceedings", "misc"] = "misc"  # the BibTeX entry type
    arxiv: str | None = None  # e.g. 2109.13860
    doi: str | None = None  # e.g. 10.1109/...
    url: str | None = None
    pages: str | None = None

    @field_validator("arxiv")
    @classmethod
    def _arxiv(cls, v):
        if v is not None and not ARXIV.match(v):
            raise ValueError(f"{v!r} is not an arXiv identifier (NNNN.NNNNN)")
        return v

    @field_validator("doi")
    @classmethod
    def _doi(cls, v):
        if v is not None and not DOI.match(v):
            raise ValueError(f"{v!r} is not a DOI (10.NNNN/...)")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v):
        if v is not None and not re.match(r"^https?://\S+$", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @property
    def link(self) -> str | None:
        """Where a reader finds the paper: the DOI, else the arXiv page, else the URL."""
        if self.doi:
            return f"https://doi.org/{self.doi}"
        if self.arxiv:
            return f"https://arxiv.org/abs/{self.arxiv}"
        return self.url


def _bib_escape(text: str) -> str:
    out = text
    for ch, rep in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                    ("_", r"\_")):
        out = out.replace(ch, rep)
    return out


def bibtex_key(slug: str, c: Citation) -> str:
    family = re.sub(r"[^A-Za-z]", "", c.authors[0].split()[-1]).lower() or "anon"
    return f"{family}{c.year}{re.sub(r'[^A-Za-z0-9]', '', slug)}"


def bibtex(slug: str, c: Citation) -> str:
    """One BibTeX entry; the title's capitals kept as written (double braces)."""
    venue_field = {"article": "journal", "inproceedings": "booktitle", "misc": "howpublished"}[c.entry]
    fields = [("title", "{" + _bib_escape(c.title) + "}"), ("author", _bib_escape(" and ".join(c.authors))),
              (venue_field, _bib_escape(c.venue)), ("year", str(c.year))]
    if c.pages:
        fields.append(("pages", c.pages))
    if c.doi:
        fields.append(("doi", c.doi))
    if c.arxiv:
        fields += [("eprint", c.arxiv), ("archivePrefix", "arXiv")]
    if c.link:
        fields.append(("url", c.link))
    body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields)
    return f"@{c.entry}{{{bibtex_key(slug, c)},\n{body}\n}}\n"


def reference_line(c: Citation) -> str:
    """The paper as a report's first lines name it: authors, venue, year (plain text; the caller escapes)."""
    return f"{', '.join(c.authors)}. {c.venue}, {c.year}"
