"""Secrets in text: every form a secret value takes in an error, a log line or a document, found to be
redacted."""
from __future__ import annotations


import functools
import re


@functools.lru_cache(maxsize=64)
def secret_pattern(secrets: frozenset[str]) -> re.Pattern:
    """A regular expression that finds any of ``secrets``, longest first, in clear or escaped.

    Error texts carry a value in whatever form the code that failed gave it: ``repr`` in a
    Python exception (``w\\'ord``, ``\\xe4``), JSON (``\\u00e4``, ``\\"``, and ``\\\\'`` for a
    repr inside JSON), shell quoting (``'"'"'``), percent-encoding (``%C3%A4``, ``+``) or HTML
    entities. Each character of a secret may appear in any of its forms, so mixed and nested
    escapes are found too."""
    alternatives = ["".join(map(_character_forms, secret)) for secret in sorted(secrets, key=len, reverse=True)
                    if secret]
    return re.compile("|".join(alternatives) or "(?!)")


_BACKSLASH_LETTERS = {"\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f", "\v": "v", "\0": "0"}


_HTML_ENTITIES = {"&": ("&amp;",), "<": ("&lt;",), ">": ("&gt;",), '"': ("&quot;",),
                  "'": ("&#39;", "&#x27;", "&apos;")}


_SHELL_QUOTES = ("'\"'\"'", "'\\''")  # shlex.quote's way with a quote inside quotes, and the other usual one


def _character_forms(character: str) -> str:
    """The regular expression for one character of a secret in each of its forms."""
    code = ord(character)
    escapes = []  # what follows one or more backslashes (JSON of a repr doubles them)
    if character in "'\"\\/" or character in _BACKSLASH_LETTERS:
        escapes.append(re.escape(_BACKSLASH_LETTERS.get(character, character)))
    if code <= 0xFF:
        escapes.append(f"(?i:x{code:02x})")
    if code <= 0xFFFF:
        escapes.append(f"(?i:u{code:04x})")
    else:  # JSON writes a character outside the BMP as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        escapes.append(f"(?i:u{high:04x}\\\\+u{low:04x})")
    escapes.append(f"(?i:U{code:08x})")
    forms = [re.escape(character), f"\\\\+(?:{'|'.join(escapes)})"]
    utf8 = "".join(f"%{byte:02x}" for byte in character.encode("utf-8", "surrogatepass"))
    forms.append(f"(?i:{utf8})")
    if 0x80 <= code <= 0xFF:
        forms.append(f"(?i:%{code:02x})")  # percent-encoded as Latin-1
    if character == " ":
        forms.append("\\+")
    forms += [re.escape(form) for form in _HTML_ENTITIES.get(character, ())]
    if character == "'":
        forms += [re.escape(form) for form in _SHELL_QUOTES]
    forms.append(f"&#0*{code};|(?i:&#x0*{code:x};)")
    return f"(?:{'|'.join(forms)})"
