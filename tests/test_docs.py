"""The documentation site builds strictly and keeps up with the code it describes.

Adding a configuration key, a public name, an error class or a module without documenting it
fails here; so does a documented default that no longer matches the code, and a runnable sample
whose printed result is no longer what the page says.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import silo
import silo.errors
from silo.config import Config, CrossSiloCommConfig, RetryPolicy, TLSConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

#: The public API every user meets (DESIGN.md); each must be shown as ``silo.NAME`` somewhere.
CORE_API = [
    "init",
    "remote",
    "get",
    "kill",
    "shutdown",
    "simulate",
    "current_party",
    "FedObject",
    "FedRemoteError",
    "SiloError",
    "ConfigError",
]


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _all_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))


def _nav_pages() -> list[str]:
    nav = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))["nav"]
    pages: list[str] = []
    for entry in nav:
        ((_, target),) = entry.items()
        pages.append(target)
    return pages


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of any level."""
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise AssertionError(f"no heading {heading!r}") from None
    body: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        body.append(line)
    return "\n".join(body)


def _table_row(text: str, key: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(f"| `{key}` |"):
            return line
    return None


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    assert field.default_factory is not dataclasses.MISSING, field.name
    return field.default_factory()


# ---------------------------------------------------------------------------- the build


def test_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(MKDOCS_YML),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    for page in _nav_pages():
        built = site / "index.html" if page == "index.md" else site / page[:-3] / "index.html"
        assert built.is_file(), f"{page} was not built"
    _check_built_site(site)


class _Page(HTMLParser):
    """The ids, links and external resources of one built page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.ids.add(values["id"])
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        if tag in ("script", "img") and "src" in values:
            self.resources.append(values["src"])
        if tag == "link" and "href" in values:
            self.resources.append(values["href"])
        if tag == "table":
            self.tables += 1


def _check_built_site(site: Path) -> None:
    """Every page reads offline (no resource fetched from another host), and every internal
    link points at a built page and, if it names an anchor, at an element with that id."""
    pages: dict[Path, _Page] = {}
    for html in site.rglob("*.html"):
        if html.parent.name == "search" or html.name == "404.html":
            continue
        parser = _Page()
        parser.feed(html.read_text(encoding="utf-8"))
        pages[html.resolve()] = parser
    assert pages, "no page was built"
    problems: list[str] = []
    for html, page in pages.items():
        where = html.relative_to(site.resolve())
        problems += [
            f"{where}: fetches {url}"
            for url in page.resources
            if "//" in urlsplit(url).netloc + url
        ]
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("mailto:"):
                continue
            target = html if not parts.path else (html.parent / parts.path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if target.suffix != ".html":
                if not target.exists():
                    problems.append(f"{where}: link to missing file {link}")
                continue
            if target not in pages:
                problems.append(f"{where}: link to missing page {link}")
            elif parts.fragment and parts.fragment not in pages[target].ids:
                problems.append(f"{where}: link to missing anchor {link}")
    css = (site / "css" / "extra.css").read_text(encoding="utf-8")
    assert "white-space: normal" in css and ".codehilite" in css
    assert not problems, "\n".join(problems)


def test_nav_lists_every_page_once() -> None:
    pages = _nav_pages()
    on_disk = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(pages) == on_disk
    assert len(pages) == len(set(pages))


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("field", dataclasses.fields(CrossSiloCommConfig), ids=lambda f: f.name)
def test_every_cross_silo_comm_key_is_documented_with_its_default(
    field: dataclasses.Field[Any],
) -> None:
    section = _section(_read("configuration.md"), f"### `{field.name}`")
    default = _default(field)
    expected = "{}" if dataclasses.is_dataclass(default) else repr(default)
    assert f"Default: `{expected}`" in section, (
        f"docs/configuration.md: the section of {field.name} must say 'Default: `{expected}`'"
    )


@pytest.mark.parametrize("field", dataclasses.fields(RetryPolicy), ids=lambda f: f.name)
def test_every_retry_policy_key_is_documented_with_its_default(
    field: dataclasses.Field[Any],
) -> None:
    section = _section(_read("configuration.md"), "### `retry_policy`")
    row = _table_row(section, field.name)
    assert row is not None, f"retry_policy.{field.name} has no row in docs/configuration.md"
    assert f"`{_default(field)!r}`" in row, f"retry_policy.{field.name}: default not in {row!r}"


@pytest.mark.parametrize(
    "field",
    [f for f in dataclasses.fields(Config) if f.name != "cross_silo_comm"],
    ids=lambda f: f.name,
)
def test_every_top_level_key_is_documented_with_its_default(
    field: dataclasses.Field[Any],
) -> None:
    section = _section(_read("configuration.md"), f"### `{field.name}`")
    assert f"Default: `{_default(field)!r}`" in section


def test_every_tls_key_and_init_argument_is_documented() -> None:
    text = _read("configuration.md")
    tls = _section(text, "## `tls_config`")
    for field in dataclasses.fields(TLSConfig):
        assert _table_row(tls, field.name), f"tls_config['{field.name}'] is not documented"
    arguments = _section(text, "## `silo.init` arguments")
    for name in inspect.signature(silo.init).parameters:
        assert _table_row(arguments, name), f"silo.init argument {name!r} is not documented"


def test_rayfed_hints_are_listed_on_the_rayfed_page() -> None:
    from silo.config import _RAYFED_HINTS

    text = _read("rayfed.md")
    for key in _RAYFED_HINTS:
        assert f"`{key}`" in text, f"RayFed key {key!r} is not in docs/rayfed.md"


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", CORE_API)
def test_core_api_is_documented(name: str) -> None:
    assert name in silo.__all__
    assert f"silo.{name}" in _all_docs(), f"silo.{name} appears nowhere in docs/"


def test_every_exported_name_is_documented() -> None:
    text = _all_docs()
    missing = [
        name
        for name in silo.__all__
        if not name.startswith("_") and not re.search(rf"\b{re.escape(name)}\b", text)
    ]
    assert not missing, f"exported but not documented: {missing}"


def _documented_error_tree() -> dict[str, str | None]:
    section = _read("errors.md").split("## The error classes", 1)[1]
    block = section.split("```text", 1)[1].split("```", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^([ │├└─]*)([A-Za-z]+)", line)
        if not match:
            continue
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_error_tree_matches_the_classes() -> None:
    documented = _documented_error_tree()
    actual: dict[str, str | None] = {}
    for name in silo.errors.__all__:
        cls = getattr(silo.errors, name)
        if not (isinstance(cls, type) and issubclass(cls, silo.SiloError)):
            continue
        bases = [b for b in cls.__bases__ if issubclass(b, silo.SiloError)]
        actual[name] = bases[0].__name__ if bases else None
    assert documented == actual


def test_module_map_lists_every_module() -> None:
    section = _section(_read("architecture.md"), "## Module map")
    documented = set(re.findall(r"^\| `(silo/[\w/]+\.py)` \|", section, re.MULTILINE))
    actual = {p.relative_to(ROOT).as_posix() for p in (ROOT / "silo").rglob("*.py")}
    assert documented == actual, (
        f"undocumented: {sorted(actual - documented)}; gone: {sorted(documented - actual)}"
    )


# ---------------------------------------------------------------------------- runnable samples


def _runnable_samples() -> list[tuple[str, str]]:
    """Complete programs in the docs: Python blocks that run ``silo.simulate`` themselves."""
    samples = []
    for page in sorted(DOCS.glob("*.md")):
        blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
        for i, block in enumerate(blocks):
            if "asyncio.run(silo.simulate(" in block:
                samples.append((f"{page.name}-{i}", block))
    return samples


SAMPLES = _runnable_samples()


def test_there_are_runnable_samples() -> None:
    assert len(SAMPLES) >= 3


@pytest.mark.parametrize("code", [c for _, c in SAMPLES], ids=[i for i, _ in SAMPLES])
def test_runnable_sample_prints_what_the_page_says(code: str, tmp_path: Path) -> None:
    script = tmp_path / "sample.py"
    script.write_text(code, encoding="utf-8")
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    promised = [
        line.split("  # ", 1)[1].strip()
        for line in code.splitlines()
        if line.startswith("print(") and "  # " in line
    ]
    assert promised, "a runnable sample should say what it prints"
    for text in promised:
        assert text in proc.stdout, f"expected {text!r} in the output, got:\n{proc.stdout}"
