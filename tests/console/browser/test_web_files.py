"""The web UI's files, without a browser: both translations carry the same
keys and placeholders, every key the code asks for exists, nothing points
off the machine, and the vendored ECharts comes with its licence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "console" / "web"
LANGUAGES = ("en", "zh-CN")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
HAN = re.compile(r"[\u4e00-\u9fff]")
# Keys whose Chinese text is the same as the English on purpose (names, codes).
SAME_IN_BOTH = re.compile(
    r"^(app\.name|lang\..*|alert\.community_id|filters\.asset_placeholder|assets\.col\.(ip|mac)|"
    r"role_asset\.(plc|rtu|ied|hmi))$")


def messages(language: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((WEB / "i18n" / f"{language}.json").read_text("utf-8"))
    return loaded


def scripts() -> list[Path]:
    return sorted((WEB / "js").rglob("*.js"))


def test_both_languages_have_the_same_keys() -> None:
    english, chinese = messages("en"), messages("zh-CN")
    assert sorted(set(english) - set(chinese)) == [], "keys missing from zh-CN"
    assert sorted(set(chinese) - set(english)) == [], "keys missing from en"


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_message_is_empty(language: str) -> None:
    assert [key for key, text in messages(language).items() if not text.strip()] == []


def test_placeholders_match() -> None:
    english, chinese = messages("en"), messages("zh-CN")
    wrong = {key: (english[key], chinese[key]) for key in english
             if set(PLACEHOLDER.findall(english[key])) != set(PLACEHOLDER.findall(chinese[key]))}
    assert wrong == {}


def test_chinese_is_translated() -> None:
    """A zh-CN message without a Chinese character is an English one left behind."""
    untranslated = [key for key, text in messages("zh-CN").items()
                    if not HAN.search(text) and not SAME_IN_BOTH.match(key)]
    assert untranslated == []


def test_every_key_the_code_asks_for_exists() -> None:
    known = set(messages("en"))
    asked: set[str] = set()
    for script in scripts():
        text = script.read_text("utf-8")
        asked |= set(re.findall(r'\bt\("([^"]+)"', text))
        asked |= set(re.findall(r'need\(\w+, "([^"]+)"', text))
    assert asked, "no t(\"…\") calls found: has the i18n function been renamed?"
    assert sorted(asked - known) == []


def test_nothing_is_loaded_from_another_host() -> None:
    """Air-gapped plants: no CDN, no web font, no absolute URL in what the page loads."""
    offenders = []
    for path in [WEB / "index.html", WEB / "app.css", *scripts()]:
        text = path.read_text("utf-8")
        for url in re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"'`)]*", text, re.I):
            offenders.append(f"{path.relative_to(WEB)}: {url}")
        if path.suffix == ".css" and re.search(r"@import|@font-face", text):
            offenders.append(f"{path.relative_to(WEB)}: @import/@font-face")
    assert offenders == []


def test_echarts_is_vendored_with_its_licence() -> None:
    folder = WEB / "vendor" / "echarts"
    assert "Apache License" in (folder / "LICENSE").read_text("utf-8")
    assert "Apache ECharts" in (folder / "NOTICE").read_text("utf-8")
    assert (folder / "echarts.min.js").stat().st_size > 500_000
    assert (folder / "VERSION").read_text("utf-8").startswith("6.")
    assert 'src="vendor/echarts/echarts.min.js"' in (WEB / "index.html").read_text("utf-8")


def test_the_pages_technique_names_are_the_detectors() -> None:
    """js/attack.js carries detectors/attack.py's Chinese names for pages that
    only have a technique id: the two tables must not drift apart."""
    from detectors.attack import TECHNIQUE_NAMES_ZH

    text = (WEB / "js" / "attack.js").read_text("utf-8")
    shipped = {match[0]: json.loads(match[1])
               for match in re.findall(r'^\s+(T\d{4}): ("[^"\n]*"),$', text, re.M)}
    assert shipped == TECHNIQUE_NAMES_ZH
