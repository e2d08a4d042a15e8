"""Reading the UI's pages in tests with the standard library's HTML parser."""

from __future__ import annotations

import dataclasses
import html.parser


@dataclasses.dataclass
class Form:
    """A <form>: where it posts and the values of its named inputs."""

    action: str
    method: str
    fields: dict[str, str]


@dataclasses.dataclass
class Element:
    """An element with an id: its tag, attributes and text."""

    tag: str
    attrs: dict[str, str]
    text: str = ""


# Elements without a closing tag.
_VOID = {"input", "br", "meta", "link", "img", "hr"}


class Page(html.parser.HTMLParser):
    """A parsed page: its visible text, links, forms, scripts and elements by id."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.texts: list[str] = []
        self.links: list[str] = []
        self.forms: list[Form] = []
        self.scripts: list[dict[str, str]] = []
        self.ids: dict[str, Element] = {}
        self.tags: list[str] = []
        self._open: list[tuple[str, Element | None]] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), values.get("method", "get"), {}))
        if tag in ("input", "textarea", "select") and self.forms and "name" in values:
            self.forms[-1].fields[values["name"]] = values.get("value", "")
        if tag == "script":
            self.scripts.append(values)
        element = Element(tag, values) if "id" in values else None
        if element is not None:
            self.ids[values["id"]] = element
        if tag not in _VOID:
            self._open.append((tag, element))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        for _, element in self._open:
            if element is not None:
                element.text += data

    @property
    def text(self) -> str:
        """The page's text with runs of whitespace made one space."""
        return " ".join(" ".join(self.texts).split())

    def form(self, action: str) -> Form:
        """The form posting to `action`."""
        found = [f for f in self.forms if f.action == action]
        assert found, f"no form posts to {action}; forms: {[f.action for f in self.forms]}"
        return found[0]

    def has_form(self, action: str) -> bool:
        """True when a form posts to `action`."""
        return any(f.action == action for f in self.forms)
