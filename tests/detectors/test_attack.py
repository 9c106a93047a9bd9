"""The ATT&CK for ICS table: every technique has its Chinese name."""

from __future__ import annotations

import re

from detectors.attack import TECHNIQUE_NAMES_ZH, TECHNIQUES

HAN = re.compile(r"[\u4e00-\u9fff]")


def test_every_technique_has_a_chinese_name_and_no_other() -> None:
    assert sorted(TECHNIQUE_NAMES_ZH) == sorted(TECHNIQUES)


def test_chinese_names_are_chinese_and_distinct() -> None:
    # Rootkit is kept as the term Chinese products use.
    untranslated = [t for t, name in TECHNIQUE_NAMES_ZH.items()
                    if not HAN.search(name) and t != "T0851"]
    assert untranslated == []
    assert len(set(TECHNIQUE_NAMES_ZH.values())) == len(TECHNIQUE_NAMES_ZH)
