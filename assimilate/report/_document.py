"""A tiny document model (sections of paragraphs, bullet lists and tables) with two renderers.

The memo is built once as blocks of plain text and rendered to Markdown or to a standalone HTML
page, so both outputs say exactly the same thing. Block text is never markup: each renderer
escapes all of it, which is what makes user-supplied strings (a study's questions, check
reasons, batch labels) safe in either output. A figure is a PNG: the HTML page embeds it as a
``data:`` URI (the page needs no other file and no network), the Markdown links the file of that
name beside it.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.png")


@dataclass(frozen=True)
class Paragraph:
    """A paragraph; ``lead`` is shown in bold before ``text``."""

    text: str
    lead: str = ""


@dataclass(frozen=True)
class Bullets:
    """An unordered list."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table with a header row."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass(frozen=True)
class Image:
    """A PNG figure: ``file_name`` beside the Markdown, ``png`` inline in the HTML, ``alt`` for both."""

    file_name: str
    png: bytes
    alt: str
    caption: str = ""

    def __post_init__(self) -> None:
        if not _FILE_NAME.fullmatch(self.file_name):
            raise ValueError(f"figure file name must be a plain *.png name, got {self.file_name!r}")
        if not self.png.startswith(PNG_SIGNATURE):
            raise ValueError(f"figure {self.file_name} is not a PNG image")
        if not self.alt.strip():
            raise ValueError(f"figure {self.file_name} needs alt text")


Block = Paragraph | Bullets | Table | Heading | Image


@dataclass(frozen=True)
class Section:
    """A titled section; ``css_class`` marks it in HTML (e.g. the status box)."""

    title: str
    blocks: tuple[Block, ...]
    css_class: str = ""


@dataclass(frozen=True)
class Document:
    """A title and its sections, in order."""

    title: str
    sections: tuple[Section, ...]


# Only what could change the structure of the Markdown or inject markup is escaped, so the raw
# Markdown stays readable: inline HTML and autolinks (<), code spans, emphasis with *, inline
# links ("]("), block markers at the start of a paragraph or item, and pipes inside table cells.
_MD_SPECIAL = re.compile(r"([\\`*<])")
_MD_LINE_START = re.compile(r"^([#>+=-]|\d+[.)](?=\s|$))")


def _md(text: str, *, cell: bool = False, line_start: bool = True) -> str:
    flat = _MD_SPECIAL.sub(r"\\\1", " ".join(text.split())).replace("](", "\\](")
    if cell:
        return flat.replace("|", "\\|")
    if not line_start:  # after a bold lead the text is mid-line: no block marker to defuse
        return flat
    return _MD_LINE_START.sub(lambda m: "\\" + m.group(1), flat)


def _md_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        if block.lead:
            return f"**{_md(block.lead)}** {_md(block.text, line_start=False)}"
        return _md(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md(item)}" for item in block.items)
    if isinstance(block, Heading):
        return f"### {_md(block.text)}"
    if isinstance(block, Image):
        # Brackets would end the alt text early: escaped like the other specials.
        alt = re.sub(r"([\\`*<\[\]])", r"\\\1", " ".join(block.alt.split()))
        caption = f"\n\n{_md(block.caption)}" if block.caption else ""
        return f"![{alt}]({block.file_name}){caption}"
    lines = [
        "| " + " | ".join(_md(cell, cell=True) for cell in block.header) + " |",
        "|" + "|".join("---" for _ in block.header) + "|",
    ]
    lines += ["| " + " | ".join(_md(cell, cell=True) for cell in row) + " |" for row in block.rows]
    return "\n".join(lines)


def to_markdown(document: Document) -> str:
    """Render as Markdown (CommonMark with pipe tables)."""
    parts = [f"# {_md(document.title)}"]
    for section in document.sections:
        parts.append(f"## {_md(section.title)}")
        parts.extend(_md_block(block) for block in section.blocks)
    return "\n\n".join(parts) + "\n"


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        lead = f"<strong>{_h(block.lead)}</strong> " if block.lead else ""
        return f"<p>{lead}{_h(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_h(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Heading):
        return f"<h3>{_h(block.text)}</h3>"
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        caption = f"<figcaption>{_h(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><img src="data:image/png;base64,{data}" alt="{_h(block.alt)}">{caption}</figure>'
    head = "".join(f"<th>{_h(cell)}</th>" for cell in block.header)
    body = "".join("<tr>" + "".join(f"<td>{_h(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #1a1a1a; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
figure { margin: 0.5rem 0 1rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e0; }
figcaption { font-size: 0.9rem; color: #444; }
section.status { border: 2px solid #888; border-radius: 6px; padding: 0 1rem; }
section.status-pass { border-color: #2e7d32; background: #f1f8f1; }
section.status-provisional, section.status-no-evidence { border-color: #c62828; background: #fdf1f1; }
"""


def to_html(document: Document) -> str:
    """Render as one standalone HTML page: inline style, no scripts, no external resources."""
    body = [f"<h1>{_h(document.title)}</h1>"]
    for section in document.sections:
        css = f' class="{_h(section.css_class)}"' if section.css_class else ""
        inner = "\n".join(_html_block(block) for block in section.blocks)
        body.append(f"<section{css}>\n<h2>{_h(section.title)}</h2>\n{inner}\n</section>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_h(document.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
