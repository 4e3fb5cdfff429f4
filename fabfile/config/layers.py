"""Host config files layered (``[hostconfig] extends``), read with configparser, values interpolated
(``${env:NAME}`` from ``.env`` or the environment, ``${here}``, ``${section:key}``, ``$$``)."""
from __future__ import annotations


import configparser
import io
import re
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from .model import ConfigError
from .schema import MIN_SECRET_LENGTH


_REFERENCE = re.compile(r"\$(\$|\{(?:([\w.-]+):)?([\w.-]+)\})")


def read_layered(path: Path) -> dict[str, dict[str, tuple[str, Path]]]:
    """The sections of ``path`` and its bases, each value with the file it comes from."""
    return layered(path.resolve(), ())


def dotenv(path: Path) -> dict:
    """``.env`` beside ``hostconfigs/``, if there is one: UTF-8 text (a BOM is fine), every line
    ``NAME=value``, a comment or blank (python-dotenv only logs a line it cannot read, without the file)."""
    try:
        text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
    except (UnicodeDecodeError, OSError) as error:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({error}); save it as UTF-8") from None
    broken = [binding.original.line for binding in parse_stream(io.StringIO(text)) if binding.error]
    if broken:  # the line itself is not shown: it may hold a secret
        raise ConfigError(f"{path}: line {', '.join(map(str, broken))}: not NAME=value (a value with spaces or "
                          f"quotes goes in quotes, closed on the same line or a later one)")
    return dotenv_values(stream=io.StringIO(text))


def layered(path: Path, seen: tuple[Path, ...]) -> dict[str, dict[str, tuple[str, Path]]]:
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"{seen[-1]}: [hostconfig] extends loops: {chain}")
    where = f"{seen[-1]}: [hostconfig] extends" if seen else "host config"
    if path.is_dir():
        raise ConfigError(f"{where}: {path} is a directory, not a host config file")
    if not path.is_file():
        raise ConfigError(f"{where}: no such file {path}")
    parser = configparser.RawConfigParser(delimiters=("=",), comment_prefixes=("#", ";"),
                                          inline_comment_prefixes=(";", " #"),
                                          default_section="\0none")
    parser.optionxform = str  # keys keep their case: program names, override sections
    try:
        with open(path, encoding="utf-8-sig") as file:  # a BOM is fine
            parser.read_file(file, str(path))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    except configparser.Error as error:
        raise ConfigError(f"{path}: {error}") from None
    merged: dict[str, dict[str, tuple[str, Path]]] = {}
    if parser.has_option("hostconfig", "extends"):
        for base in parser.get("hostconfig", "extends").split():
            base_path = (path.parent / base).resolve()
            for section, options in layered(base_path, (*seen, path)).items():
                merged.setdefault(section, {}).update(options)
    for section in parser.sections():
        merged.setdefault(section, {})  # an empty [front] means a front with its defaults
        for key, value in parser.items(section):
            merged.setdefault(section, {})[key] = (value.strip(), path)
    merged.get("hostconfig", {}).pop("extends", None)
    return merged


def interpolate(value, raw, origin, environ, secrets, where, stack) -> str:
    def replace(match: re.Match) -> str:
        if match.group(1) == "$":
            return "$"
        section, key = match.group(2), match.group(3)
        if section is None and key == "here":
            return str(origin.parent)
        if section == "env":
            if key not in environ:
                raise ConfigError(f"{where}: ${{env:{key}}} is not set in .env or the environment")
            if 0 < len(environ[key]) < MIN_SECRET_LENGTH:
                raise ConfigError(f"{where}: ${{env:{key}}} is {len(environ[key])} character(s) long; values "
                                  f"from the environment are secrets, and one this short cannot be told apart "
                                  f"from other text when output is redacted: give it {MIN_SECRET_LENGTH} "
                                  f"characters or more, or write a value that is not secret in the file itself")
            secrets.add(environ[key])
            return environ[key]
        if section is None or key not in raw.get(section, {}):
            raise ConfigError(f"{where}: cannot resolve {match.group(0)}")
        if (section, key) in stack:
            raise ConfigError(f"{where}: {match.group(0)} refers to itself")
        other, other_origin = raw[section][key]
        return interpolate(other, raw, other_origin, environ, secrets, where, (*stack, (section, key)))

    return _REFERENCE.sub(replace, value)
