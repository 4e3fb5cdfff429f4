"""Unit tests: a program's command reaches a systemd unit as the words it is, whatever they hold.

systemd reads ``ExecStart=`` by its own rules (systemd.syntax(7), systemd.service(5)): words split
on spaces, quotes anywhere in a word, C-style backslash escapes inside quotes too (unlike a
shell), ``%`` specifiers and ``$`` variables expanded everywhere (``%%`` and ``$$`` are literal),
and a lone ``;`` separates commands. ``systemd_words`` reads a line so.
"""
from __future__ import annotations

import random
import shlex

import pytest

from fabfile.config.model import HostConfig, Program
from fabfile.programs import systemd

ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"',
           "'": "'", "s": " "}


def systemd_words(line: str) -> list[str]:
    words, word, quote, started, index = [], "", None, False, 0
    while index < len(line):
        character = line[index]
        if character == "%":
            assert line[index + 1] == "%", f"systemd would expand the specifier {line[index:index + 2]!r}"
            word, index, started = word + "%", index + 2, True
            continue
        if character == "$":
            assert line[index + 1] == "$", f"systemd would expand a variable at {line[index:]!r}"
            word, index, started = word + "$", index + 2, True
            continue
        if character == "\\":
            following = line[index + 1]
            if following == ";" and quote is None:
                word, index, started = word + ";", index + 2, True
                continue
            assert following in ESCAPES, f"an escape systemd reads otherwise: \\{following}"
            word, index, started = word + ESCAPES[following], index + 2, True
            continue
        if quote:
            if character == quote:
                quote = None
            else:
                word += character
        elif character in "'\"":
            quote, started = character, True
        elif character == " ":
            if started:
                assert not (word == ";" and line[index - 2:index] in (" ;", "=;")), "a lone ; separates commands"
                words.append(word)
            word, started = "", False
        else:
            word += character
            started = True
        index += 1
    assert quote is None
    assert not (word == ";" and line.endswith(" ;")), "a lone ; separates commands"
    return words + ([word] if started else [])


def unit_words(command: str) -> list[str]:
    config = HostConfig(name="s", path=None, address="h", root="/srv/site", buildout_dir=None,
                        programs=(Program("instance1", command),), manager="systemd", app_user="plone")
    unit = systemd.render_units(config, "plone")["srv-site-instance1.service"]
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return systemd_words(line[len("ExecStart="):])


@pytest.mark.parametrize("arguments", [["console"], ["a\\b"], ["it's"], ["$HOME"], ["100%"], ["%h"], [";"],
                                       ["a b", "c"], ['say "hi"'], ["\\n"], ["x;y"], ["#x"], ["${env}"]])
def test_a_command_reaches_the_unit_as_its_words(arguments):
    assert unit_words(shlex.join(["bin/instance1", *arguments])) == ["/srv/site/current/bin/instance1", *arguments]


def test_plain_commands_are_written_as_before():
    assert systemd.program_command(HostConfig(name="s", path=None, address="h", root="/srv/site", buildout_dir=None),
                                   Program("instance1", "bin/instance1 console")) == \
        "/srv/site/current/bin/instance1 console"


def test_two_hundred_and_fifty_hostile_commands_reach_the_unit_as_their_words():
    chosen = random.Random(20)
    alphabet = "ab0 '\"\\$%;#{}()!*&|<>`~=?:@,\u00e4"
    for _ in range(250):
        arguments = ["".join(chosen.choice(alphabet) for _ in range(chosen.randint(1, 12)))
                     for _ in range(chosen.randint(1, 3))]
        assert unit_words(shlex.join(["bin/instance1", *arguments])) == \
            ["/srv/site/current/bin/instance1", *arguments], arguments
