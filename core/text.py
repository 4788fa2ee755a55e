"""Text from outside (people, the model, imports) made safe to store; every app uses it.

PostgreSQL cannot store NUL in text, and no database driver encodes a lone UTF-16
surrogate (byte-level tokenizers cut emoji in half; JSON's ``"\\ud800"`` escapes make
them too). Such characters become U+FFFD, the replacement character, so the rest of the
text is kept: nothing a person wrote or read is lost to one bad character.
"""

REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    """Return ``value`` with NUL and unpaired surrogates replaced by U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 round trip: a pair written as two code points becomes its character,
        # each unpaired surrogate one U+FFFD.
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value
