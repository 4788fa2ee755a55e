"""The themes of static/css/app.css: the dark colours are one list, given twice (to the
system's dark mode unless light was chosen, and to a dark choice); each overrides a
light colour."""

import re
from pathlib import Path

CSS = (Path(__file__).resolve().parent.parent / "static" / "css" / "app.css").read_text()
DECLARATION = re.compile(r"(--[\w-]+)\s*:\s*([^;]+);")


def block(selector_pattern: str) -> dict[str, str]:
    """Return the custom properties of the one rule whose selector matches the pattern."""
    (body,) = re.findall(selector_pattern + r"\s*\{([^{}]*)\}", CSS)
    return dict(DECLARATION.findall(body))


def test_the_dark_colours_are_the_same_for_the_system_and_for_a_choice():
    system = block(
        r"@media \(prefers-color-scheme: dark\)\s*\{\s*:root:not\(\[data-theme=\"light\"\]\)"
    )
    chosen = block(r"\n:root\[data-theme=\"dark\"\]")
    assert system and system == chosen


def test_each_dark_colour_overrides_a_light_one():
    light = block(r"(?m)^:root")
    dark = block(r"\n:root\[data-theme=\"dark\"\]")
    assert set(dark) <= set(light)
    assert all(dark[name] != light[name] for name in dark)


def test_form_controls_follow_the_theme():
    assert re.search(r':root\[data-theme="light"\]\s*\{\s*color-scheme: light;', CSS)
    assert re.search(r':root\[data-theme="dark"\]\s*\{\s*color-scheme: dark;', CSS)


def test_every_colour_used_is_defined():
    light = block(r"(?m)^:root")
    used = set(re.findall(r"var\((--[\w-]+)\)", CSS))
    assert used <= set(light), used - set(light)
