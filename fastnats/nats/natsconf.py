"""Reader and writer for nats-server.conf, and the settings fastnats takes from it.

nats-server has a configuration language of its own and no Python library reads it. :func:`load`
parses it the way nats-server 2.x does: ``key = value``, ``key: value`` and ``key value``;
``{}`` blocks and ``[]`` arrays; ``#`` and ``//`` comments; quoted and bare strings; integers
with size suffixes (``1K`` is 1000, ``1KB``/``1Ki``/``1KiB`` are 1024, up to ``E``); floats;
``true/false/yes/no/on/off``; ``( ... )`` multi-line strings; ``include FILE``; and ``$NAME``
variables. Every problem is a :class:`~fastnats.errors.ConfError` that starts with ``file:line:``
and names the kind of problem only: an error never quotes the text of a file, which may be one
that is no conf at all (``include "/proc/self/environ"``).

Limits keep a mistaken or hostile conf from taking the process down: only regular files are read
(a FIFO, a device, a directory or a socket is refused before it is opened), each file may hold
:data:`MAX_FILE_BYTES` and a conf with its includes :data:`MAX_TOTAL_BYTES`, and blocks, arrays,
includes and environment variables nest at most :data:`MAX_DEPTH` deep.

Facts of nats-server 2.15 this module follows (checked against the real binary):

* keys are case-insensitive, variable names are not;
* a variable is any key defined before it in the same or an enclosing block; otherwise the
  environment, whose value is parsed like a conf value (``PORT=8222`` gives an integer);
* an included file is parsed on its own (it does not see the includer's variables), relative to
  the directory of the file that includes it, and its keys land where the ``include`` stands;
* a key that is no setting is an ``unknown field`` error unless a ``$reference`` uses it, so
  :func:`translate`, which resolves the references, drops such variable definitions; a setting
  that a reference uses still applies, and is kept;
* durations stay strings (``"10s"``, ``10s``), but a bare ``2m`` is the integer 2000000;
* monitoring port 0 disables monitoring; -1 makes nats-server pick a free port and log it
  (``Starting http monitor on HOST:PORT``); a client port of 0 means the default, 4222;
* an empty monitoring host falls back to the client host (``host``/``net``/``listen``);
* http and https monitoring together pass ``nats-server -t`` but stop the server at start.

fastnats also reads the dialect of the article it grew from: everything wrapped in
``server { }``, monitoring as ``http { addr: ":8222" }`` and a ``metrics { port: N }`` block for
the exporter. nats-server rejects that dialect (``unknown field "server"``); :func:`translate`
writes the equivalent conf it accepts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple, TypeAlias, Union

from ..errors import ConfError
from ..files import FileRefused, FileTooLarge, read_regular

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES", "Conf", "Entry", "MonitorAddr",
           "Section", "Translation", "Value", "dump", "load", "translate"]

#: The most bytes one file may hold; real confs, thousands of users included, hold a few MB.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: The most bytes a conf and everything it includes may hold together (an include may repeat).
MAX_TOTAL_BYTES = 128 * 1024 * 1024
#: How deep blocks, arrays, includes and environment variables may nest, together: far beyond
#: any real conf, and far below what would exhaust Python's stack.
MAX_DEPTH = 64

Value: TypeAlias = Union[str, int, float, bool, "list[Value]", "Section"]

_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_INTEGER = re.compile(r"(-?\d+)(?:([kmgtpe])(b|i|ib)?)?", re.IGNORECASE)
_FLOAT = re.compile(r"-?\d+\.\d+")
_INT64 = range(-(2**63), 2**63)
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
_HEX2 = re.compile(r"[0-9a-fA-F]{2}")
_QUOTED_RUN = re.compile(r'[^"\\]*')
_SPACE_RUN = re.compile(r"[ \t\r\n]*")
# A bare value ends at any of these; a key also at a separator, a bracket or a quote.
_VALUE_END = frozenset(" \t\r\n,;]}")
_KEY_END = _VALUE_END | frozenset("=:{[#\"'")
_BCRYPT_PREFIX = "2a$"
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_ENV_SOURCE = "an environment variable's value"
_TOO_DEEP = (f"nested more than {MAX_DEPTH} deep (blocks, arrays, includes and environment "
             f"variables count together)")


@dataclass(eq=False, slots=True)
class Entry:
    """One ``key: value`` of a block, with where it was written."""

    key: str
    value: Value
    path: Path
    line: int
    # Set when a $reference named this key: nats-server then treats it as a variable.
    used_as_variable: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


class Section(Mapping[str, Value]):
    """A ``{ }`` block (or the whole file): ordered, keys kept as written, looked up ignoring case.

    As in nats-server, keys that differ in case are different keys (``PORT = 4222`` and
    ``port: $PORT`` are two entries); a lookup takes the exact key, else the later of those that
    match ignoring case. A key written twice keeps its first position and its last value.
    """

    __slots__ = ("_entries", "__weakref__")

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def _add(self, entry: Entry) -> None:
        self._entries[entry.key] = entry

    def __getitem__(self, key: str) -> Value:
        entry = self.entry(key)
        if entry is None:
            raise KeyError(key)
        return entry.value

    def __iter__(self) -> Iterator[str]:
        return (entry.key for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, key: str) -> Entry | None:
        """The entry for ``key`` (any case), with its file and line; None if absent."""
        if not isinstance(key, str):
            return None
        found = self._entries.get(key)
        if found is None:
            folded = key.lower()
            for entry in self._entries.values():
                if entry.key.lower() == folded:
                    found = entry
        return found

    def entries(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __repr__(self) -> str:
        return f"Section({dict(self.items())!r})"


def load(path: str | os.PathLike[str]) -> Conf:
    """Parse the nats-server.conf at ``path`` and derive the settings fastnats needs."""
    path = Path(path)
    tree = _parse_file(path, _Budget(MAX_TOTAL_BYTES), chain=(), depth=0, included_from=None)
    return _derive(path, tree)


class _Budget:
    """The bytes a conf and its includes may still read, shared by every file of one load()."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _size_text(size: int) -> str:
    return f"{size >> 20} MiB" if size % (1 << 20) == 0 else f"{size} bytes"


def _read(path: Path, budget: _Budget, included_from: str | None) -> str:
    """The text of ``path``: a regular file, read up to the limits and decoded as UTF-8."""

    def refused(reason: str) -> ConfError:
        if included_from is None:
            # The conf itself: there is no line to point at.
            return ConfError(f"{path}: cannot read: {reason}")
        return ConfError(f"{included_from}: cannot read include {str(path)!r}: {reason}")

    limit = min(MAX_FILE_BYTES, budget.left)
    too_large = (f"larger than {_size_text(MAX_FILE_BYTES)}, the most a conf file may hold"
                 if limit == MAX_FILE_BYTES else
                 f"the conf and its includes hold more than {_size_text(MAX_TOTAL_BYTES)}")
    try:
        data = read_regular(path, limit)
    except FileTooLarge:
        raise refused(too_large) from None
    except FileRefused as exc:
        raise refused(exc.reason) from None
    budget.left -= len(data)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None


def _parse_file(path: Path, budget: _Budget, chain: tuple[Path, ...], depth: int,
                included_from: str | None) -> Section:
    text = _read(path, budget, included_from)
    return _Parser(text, str(path), path.parent, budget, chain + (path.resolve(),),
                   depth).document()


class _Parser:
    """Recursive descent over the text of one file (or one environment variable's value)."""

    def __init__(self, text: str, source: str, base_dir: Path, budget: _Budget,
                 chain: tuple[Path, ...], depth: int,
                 env_names: frozenset[str] = frozenset()) -> None:
        self.text = text
        self.pos = 0
        self.source = source
        # One Path shared by the entries of the file: a big conf has millions of them.
        self.path = Path(source)
        self.base_dir = base_dir
        self.budget = budget
        # Resolved paths of the files being read, outermost first: an include of one is a cycle.
        self.chain = chain
        # Blocks, arrays, includes and environment expansions open around the current position.
        self.depth = depth
        # Environment variables being expanded, so that FOO='$FOO' fails instead of recursing.
        self.env_names = env_names
        self.scopes: list[Section] = []
        # Lines are counted from the last position asked for (positions mostly grow): a table
        # of line ends would take several times the size of a file of blank lines.
        self._line_pos = 0
        self._line = 1

    # -- positions and errors

    def line_at(self, pos: int) -> int:
        if pos >= self._line_pos:
            line = self._line + self.text.count("\n", self._line_pos, pos)
        else:
            line = self._line - self.text.count("\n", pos, self._line_pos)
        self._line_pos, self._line = pos, line
        return line

    def error(self, message: str, pos: int) -> ConfError:
        return ConfError(f"{self.source}:{self.line_at(pos)}: {message}")

    def enter(self, pos: int) -> int:
        """The depth one level further in, from what opens at ``pos``; raises past MAX_DEPTH."""
        if self.depth >= MAX_DEPTH:
            raise self.error(_TOO_DEEP, pos)
        return self.depth + 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_comment(self) -> bool:
        return self.peek() == "#" or self.text.startswith("//", self.pos)

    def skip_blanks(self) -> None:
        """Skip spaces, tabs and a trailing comment, but not the end of the line."""
        while self.peek() in (" ", "\t"):
            self.pos += 1
        if self.at_comment():
            end = self.text.find("\n", self.pos)
            self.pos = len(self.text) if end < 0 else end
            if self.text[self.pos - 1] == "\r":
                self.pos -= 1

    def skip_lines(self) -> None:
        """Skip blanks, comments and line ends."""
        while True:
            blanks = _SPACE_RUN.match(self.text, self.pos)
            assert blanks is not None  # it matches the empty string too
            self.pos = blanks.end()
            if not self.at_comment():
                return
            self.skip_blanks()

    # -- structure

    def document(self) -> Section:
        root = Section()
        self.skip_lines()
        if self.peek() == "{":
            # JSON-style: the whole conf inside one pair of braces, as nats-server allows.
            opened = self.pos
            self.pos += 1
            self.block_body(root, opened)
            self.skip_lines()
            if self.pos < len(self.text):
                raise self.error("unexpected text after the closing '}'", self.pos)
        else:
            self.block_body(root, None)
        return root

    def block_body(self, section: Section, opened: int | None) -> None:
        outer = self.depth
        if opened is not None:
            self.depth = self.enter(opened)
        self.scopes.append(section)
        try:
            while True:
                self.skip_lines()
                char = self.peek()
                if not char:
                    if opened is not None:
                        raise self.error("unterminated block: this '{' is never closed", opened)
                    return
                if char == "}":
                    if opened is None:
                        raise self.error("stray '}' closes no block", self.pos)
                    self.pos += 1
                    return
                self.statement(section)
        finally:
            self.scopes.pop()
            self.depth = outer

    def statement(self, section: Section) -> None:
        key_pos = self.pos
        key, quoted = self.key()
        if not quoted and key.lower() == "include" and self.peek() in (" ", "\t"):
            self.skip_blanks()
            if self.peek() not in ("=", ":"):
                self.include(section, key_pos)
                self.end_of_statement()
                return
        self.skip_blanks()
        if self.peek() in ("=", ":"):
            self.pos += 1
            self.skip_blanks()
        value = self.value_for(key_pos)
        section._add(Entry(key, value, self.path, self.line_at(key_pos)))
        self.end_of_statement()

    def key(self) -> tuple[str, bool]:
        start = self.pos
        quote = self.peek()
        if quote in ('"', "'"):
            end = self.text.find(quote, start + 1)
            newline = self.text.find("\n", start + 1)
            if end < 0 or 0 <= newline < end:
                raise self.error("unterminated quoted key", start)
            self.pos = end + 1
            return self.text[start + 1:end], True
        while self.pos < len(self.text) and self.text[self.pos] not in _KEY_END:
            self.pos += 1
        if self.pos == start:
            raise self.error("expected a key", start)
        return self.text[start:self.pos], False

    def end_of_statement(self) -> None:
        self.skip_blanks()
        char = self.peek()
        if char in (";", ","):
            self.pos += 1
        elif char not in ("", "\r", "\n", "}"):
            raise self.error("unexpected text after a value (one setting per line, or separate "
                             "them with ';')", self.pos)

    def value_for(self, key_pos: int) -> Value:
        char = self.peek()
        if char in ("\r", "\n"):
            # An opening brace may go on the next line.
            after_key = self.pos
            self.skip_lines()
            if self.peek() != "{":
                self.pos = after_key
                raise self.error("missing value after the key", key_pos)
        elif not char or char in ";,}]" or self.at_comment():
            raise self.error("missing value after the key", key_pos)
        return self.value()

    def value(self) -> Value:
        """The value that starts at the current position."""
        char = self.peek()
        start = self.pos
        if char == "{":
            self.pos += 1
            block = Section()
            self.block_body(block, start)
            return block
        if char == "[":
            return self.array()
        if char == '"':
            return self.double_quoted()
        if char == "'":
            end = self.text.find("'", start + 1)
            if end < 0:
                raise self.error("unterminated string", start)
            self.pos = end + 1
            return self.text[start + 1:end]
        if char == "(":
            return self.multiline_string()
        return self.bare()

    def array(self) -> list[Value]:
        opened = self.pos
        outer = self.depth
        self.depth = self.enter(opened)
        self.pos += 1
        items: list[Value] = []
        expect_item = True
        while True:
            self.skip_lines()
            char = self.peek()
            if not char:
                raise self.error("unterminated array: this '[' is never closed", opened)
            if char == "]":
                self.pos += 1
                self.depth = outer
                return items
            if char == ",":
                if expect_item:
                    raise self.error("unexpected ',' in array", self.pos)
                self.pos += 1
                expect_item = True
                continue
            if not expect_item:
                raise self.error("expected ',' or ']' in array", self.pos)
            if char == "}":
                raise self.error("stray '}' inside an array", self.pos)
            items.append(self.value())
            self.skip_blanks()
            # A line end separates items as a comma does.
            expect_item = self.peek() in ("\r", "\n")

    def double_quoted(self) -> str:
        opened = self.pos
        self.pos += 1
        parts: list[str] = []
        while True:
            run = _QUOTED_RUN.match(self.text, self.pos)
            assert run is not None
            parts.append(run.group())
            self.pos = run.end()
            char = self.peek()
            if not char:
                raise self.error("unterminated string", opened)
            if char == '"':
                self.pos += 1
                return self.joined(parts, opened)
            parts.append(self.escape())

    def escape(self) -> str:
        start = self.pos
        code = self.text[start + 1:start + 2]
        if code in _ESCAPES:
            self.pos += 2
            return _ESCAPES[code]
        if code == "x":
            digits = self.text[start + 2:start + 4]
            if not _HEX2.fullmatch(digits):
                raise self.error("\\x needs two hexadecimal digits", start)
            self.pos += 4
            # \xHH is a byte: carry the high ones as surrogate escapes until joined() decodes.
            byte = int(digits, 16)
            return chr(byte) if byte < 0x80 else chr(0xDC00 + byte)
        raise self.error("invalid escape (allowed: \\t \\n \\r \\\" \\\\ \\xHH)",
                         start)

    def joined(self, parts: list[str], start: int) -> str:
        """The string of ``parts``, with the bytes of \\x escapes decoded as UTF-8."""
        text = "".join(parts)
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("\\x escapes do not form UTF-8", start) from None

    def multiline_string(self) -> str:
        # Ends at a ')' that is alone at the start of a line; the text keeps its line ends.
        opened = self.pos
        search = self.pos
        while True:
            close = self.text.find("\n)", search)
            if close < 0:
                raise self.error("unterminated ( ) string: no line with only ')'", opened)
            after = self.text[close + 2:close + 3]
            if after in ("", "\n", "\r"):
                self.pos = close + 2
                return self.text[opened + 1:close + 1]
            search = close + 1

    def bare(self) -> Value:
        start = self.pos
        parts: list[str] = []
        escaped = False
        while self.pos < len(self.text) and self.text[self.pos] not in _VALUE_END:
            if self.text[self.pos] == "\\":
                parts.append(self.escape())
                escaped = True
            else:
                parts.append(self.text[self.pos])
                self.pos += 1
        if escaped:
            return self.joined(parts, start)
        return self.classify("".join(parts), start)

    def classify(self, token: str, pos: int) -> Value:
        if token.lower() in _BOOLS:
            return _BOOLS[token.lower()]
        if token.startswith("$"):
            return self.variable(token[1:], pos)
        if match := _INTEGER.fullmatch(token):
            number = int(match[1])
            if match[2]:
                base = 1024 if match[3] else 1000
                number *= base ** ("kmgtpe".index(match[2].lower()) + 1)
            if number not in _INT64:
                raise self.error("integer out of range (64 bits)", pos)
            return number
        if _FLOAT.fullmatch(token):
            return float(token)
        if token.startswith("-"):
            raise self.error("invalid number", pos)
        # Anything else starting with a digit (an IP address, "10s", ...) is a string.
        return token

    def variable(self, name: str, pos: int) -> Value:
        if name.startswith(_BCRYPT_PREFIX):
            # Bcrypt hashes are written bare and start with $2a$; they are not references.
            return "$" + name
        for scope in reversed(self.scopes):
            entry = scope._entries.get(name)
            if entry is not None:
                entry.used_as_variable = True
                return entry.value
        if name in os.environ:
            return self.environment_value(name, os.environ[name], pos)
        raise self.error("undefined variable (set neither earlier in the conf nor in the "
                         "environment)", pos)

    def environment_value(self, name: str, raw: str, pos: int) -> Value:
        if name in self.env_names:
            raise self.error("an environment variable refers to itself", pos)
        # Neither the name nor the value goes into an error: both may be secrets.
        parser = _Parser(raw, _ENV_SOURCE, self.base_dir, self.budget, self.chain,
                         self.enter(pos), self.env_names | {name})
        try:
            parser.skip_blanks()
            if not parser.peek():
                raise parser.error("empty value", 0)
            value = parser.value()
            parser.skip_lines()
            if parser.peek():
                raise parser.error("unexpected text after the value", parser.pos)
        except ConfError as exc:
            # Reads as "nats.conf:3: in an environment variable's value:1: unterminated string".
            raise self.error(f"in {exc}", pos) from None
        return value

    def include(self, section: Section, key_pos: int) -> None:
        start = self.pos
        quote = self.peek()
        if quote in ('"', "'"):
            end = self.text.find(quote, start + 1)
            if end < 0:
                raise self.error("unterminated include file name", start)
            name = self.text[start + 1:end]
            self.pos = end + 1
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in " \t\r\n;}":
                self.pos += 1
            name = self.text[start:self.pos]
        where = f"{self.source}:{self.line_at(key_pos)}"
        if not name:
            raise ConfError(f"{where}: include needs a file name")
        target = self.base_dir / name
        resolved = target.resolve()
        if resolved in self.chain:
            cycle = " -> ".join(str(p) for p in (*self.chain, resolved))
            raise ConfError(f"{where}: include cycle: {cycle}")
        included = _parse_file(target, self.budget, self.chain, self.enter(key_pos), where)
        for entry in included.entries():
            section._add(entry)


# -- settings fastnats reads


@dataclass(frozen=True)
class MonitorAddr:
    """Where nats-server serves its monitoring API, as the conf says."""

    scheme: str  # "http" or "https"
    host: str    # as written; "" when nats-server binds every interface
    port: int    # -1: nats-server picks a free port when it starts
    where: str   # file:line of the setting

    @property
    def url(self) -> str:
        """The URL to poll; wildcard hosts become 127.0.0.1.

        Raises ConfError for port -1, which only the running server's log can tell.
        """
        if self.port == -1:
            raise ConfError(f"{self.where}: monitoring port -1 means nats-server picks a free "
                            f"port at start; the conf cannot say which")
        host = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Conf:
    """A parsed nats-server.conf: the settings fastnats derives, and the tree as written until
    :meth:`without_tree` lets it go."""

    path: Path
    # True for the article's dialect (server {} wrapper, metrics {} or http {} block).
    is_article_dialect: bool
    monitor: MonitorAddr | None
    metrics_host: str | None
    metrics_port: int | None
    _tree: Section | None = field(repr=False)
    # What translate() writes, kept by without_tree(keep_translation=True): (text, warnings).
    _translation: tuple[str, tuple[str, ...]] | None = field(default=None, repr=False)

    @property
    def tree(self) -> Section:
        if self._tree is None:
            raise ValueError(f"{self.path}: the tree of this conf was let go by without_tree()")
        return self._tree

    @property
    def monitor_url(self) -> str | None:
        """``scheme://host:port`` of the monitoring API; None when the conf enables none."""
        return None if self.monitor is None else self.monitor.url

    def without_tree(self, *, keep_translation: bool = False) -> Conf:
        """This conf without its tree, which may be hundreds of MB for a big conf.

        With ``keep_translation``, what :func:`translate` would write is kept (as text about the
        size of the conf), so that ``translate()`` still works; nothing else needs the tree.
        """
        translation = self._translation
        if keep_translation and translation is None:
            translation = _translation(self)
        return dataclasses.replace(self, _tree=None,
                                   _translation=translation if keep_translation else None)


def _derive(path: Path, tree: Section) -> Conf:
    settings = _unwrapped(tree)
    article = isinstance(tree.get("server"), Section) or any(
        isinstance(settings.get(name), Section) for name in ("metrics", "http", "https"))
    monitor, _ = _monitor(settings)
    metrics_host, metrics_port = _metrics(settings)
    return Conf(path, article, monitor, metrics_host, metrics_port, tree)


def foreign_settings(conf: Conf) -> list[str]:
    """``file:line: ...`` for each setting nats-server itself would refuse in ``conf``: the
    article dialect's ``server { }`` wrapper, ``metrics { }`` block and ``http { }`` block."""
    found = []
    wrapper = conf.tree.entry("server")
    if wrapper is not None and isinstance(wrapper.value, Section):
        found.append(f"{wrapper.where}: `server {{ }}` is fastnats's dialect; nats-server refuses "
                     f"it (unknown field \"server\")")
    settings = _unwrapped(conf.tree)
    for name in ("http", "https"):
        block = settings.entry(name)
        if block is not None and isinstance(block.value, Section):
            found.append(f"{block.where}: `{block.key} {{ }}` is fastnats's dialect; nats-server "
                         f"takes {block.key}: \"host:port\"")
    metrics = settings.entry("metrics")
    if metrics is not None:
        found.append(f"{metrics.where}: `metrics {{ }}` is read by fastnats only; nats-server "
                     f"refuses it (unknown field \"metrics\")")
    return found


def _unwrapped(tree: Section) -> Section:
    """The top-level settings, with the article's ``server { }`` wrapper opened in place."""
    if not isinstance(tree.get("server"), Section):
        return tree
    merged = Section()
    for entry in tree.entries():
        if entry.key.lower() == "server":
            assert isinstance(entry.value, Section)
            for inner in entry.value.entries():
                merged._add(inner)
        else:
            merged._add(entry)
    return merged


def _try_split_hostport(text: str) -> tuple[str, int] | None:
    """``host:port``, ``:port`` or ``[v6]:port`` split as nats-server (Go's net package) does."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None
    if not sep or not re.fullmatch(r"-?\d+", port):
        return None
    return host, int(port)


def _split_hostport(text: str, entry: Entry, what: str) -> tuple[str, int]:
    split = _try_split_hostport(text)
    if split is None:
        raise ConfError(f"{entry.where}: {what} must be \"host:port\"")
    return split


def _port(value: object, entry: Entry, what: str, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= 65535:
        raise ConfError(f"{entry.where}: {what} must be a port number from {lowest} to 65535")
    return value


def _monitor_block(entry: Entry) -> tuple[str, int, list[str]]:
    """Host, port and warnings for the article's ``http { addr: ... }`` block.

    The warnings name the keys nats-server has no place for (the article's debug and pprof).
    """
    block = entry.value
    assert isinstance(block, Section)
    addr, host, port = block.entry("addr"), block.entry("host"), block.entry("port")
    warnings = [f"{e.where}: dropped {entry.key}.{e.key}: nats-server has no such monitoring "
                f"setting" for e in block.entries()
                if e.key.lower() not in ("addr", "host", "port")]
    if addr is not None:
        if host is not None or port is not None:
            raise ConfError(f"{addr.where}: {entry.key} {{ }} takes addr or host/port, not both")
        what = f"{entry.key}.addr"
        if isinstance(addr.value, str):
            found_host, found_port = _split_hostport(addr.value, addr, what)
            return found_host, _port(found_port, addr, what, -1), warnings
        return "", _port(addr.value, addr, what, -1), warnings
    if port is None:
        raise ConfError(f"{entry.where}: {entry.key} {{ }} sets no port "
                        f"(addr: \"host:port\" or port: N)")
    if host is not None and not isinstance(host.value, str):
        raise ConfError(f"{host.where}: {entry.key}.host must be a string")
    found_host = "" if host is None else str(host.value)
    return found_host, _port(port.value, port, f"{entry.key}.port", -1), warnings


class _MonitorSetting(NamedTuple):
    scheme: str
    host: str  # "" when the setting names no host
    port: int
    entry: Entry


def _monitor(settings: Section) -> tuple[MonitorAddr | None, list[str]]:
    """The monitoring address, and warnings about an ``http { }`` block's unusable keys."""
    found: list[_MonitorSetting] = []
    warnings: list[str] = []
    for entry in settings.entries():
        name = entry.key.lower()
        if name in ("http", "https"):
            if isinstance(entry.value, Section):
                host, port, block_warnings = _monitor_block(entry)
                warnings += block_warnings
            elif isinstance(entry.value, str):
                host, port = _split_hostport(entry.value, entry, name)
                port = _port(port, entry, name, -1)
            else:
                host, port = "", _port(entry.value, entry, name, -1)
            found.append(_MonitorSetting(name, host, port, entry))
        elif name in ("http_port", "monitor_port", "https_port"):
            scheme = "https" if name == "https_port" else "http"
            found.append(_MonitorSetting(scheme, "", _port(entry.value, entry, name, -1), entry))
    enabled: list[MonitorAddr] = []
    for scheme in ("http", "https"):
        same = [s for s in found if s.scheme == scheme]
        if not same:
            continue
        hosts = {s.host for s in same if s.host}
        if len({s.port for s in same}) > 1 or len(hosts) > 1:
            # nats-server applies these keys in random (Go map) order.
            listed = ", ".join(f"{s.entry.key} at {s.entry.where}" for s in same)
            raise ConfError(f"{same[-1].entry.where}: {listed} disagree; nats-server would "
                            f"apply one of them at random")
        if same[0].port != 0:
            # An empty monitoring host falls back to the client host.
            host = hosts.pop() if hosts else _client_host(settings)
            enabled.append(MonitorAddr(scheme, host, same[0].port, same[-1].entry.where))
    if len(enabled) == 2:
        raise ConfError(f"{enabled[1].where}: both http and https monitoring are set; "
                        f"nats-server refuses to start with both")
    return (enabled[0] if enabled else None), warnings


def _client_host(settings: Section) -> str:
    listen = settings.entry("listen")
    if listen is not None and isinstance(listen.value, str):
        return _split_hostport(listen.value, listen, "listen")[0]
    for name in ("host", "net"):
        value = settings.get(name)
        if isinstance(value, str):
            return value
    return ""


def _metrics(settings: Section) -> tuple[str | None, int | None]:
    """Host and port of ``metrics { port: N, host|addr: ... }``, the exporter's own block."""
    entry = settings.entry("metrics")
    if entry is None:
        return None, None
    block = entry.value
    if not isinstance(block, Section):
        raise ConfError(f"{entry.where}: metrics must be a block, like metrics {{ port: 9100 }}")
    for item in block.entries():
        if item.key.lower() not in ("port", "host", "addr"):
            raise ConfError(f"{item.where}: unknown metrics setting (fastnats reads port, host "
                            f"and addr)")
    port_entry = block.entry("port")
    port = None if port_entry is None else _port(port_entry.value, port_entry, "metrics.port", 1)
    host: str | None = None
    named = [e for e in (block.entry("host"), block.entry("addr")) if e is not None]
    if len(named) == 2:
        raise ConfError(f"{named[1].where}: metrics takes host or addr, not both")
    for item in named:
        what = f"metrics.{item.key}"
        if not isinstance(item.value, str):
            raise ConfError(f"{item.where}: {what} must be a string")
        split = _try_split_hostport(item.value)
        if split is None:
            host = item.value
            continue
        if port_entry is not None:
            raise ConfError(f"{item.where}: {what} has a port and so has metrics.port")
        host, port = split[0], _port(split[1], item, what, 1)
    return host or None, port


# -- translation for a real nats-server


@dataclass(frozen=True)
class Translation:
    """A conf written by :func:`translate`, and what it had to leave out (``file:line: ...``)."""

    path: Path
    warnings: tuple[str, ...]


def translate(conf: Conf, dest_dir: str | os.PathLike[str]) -> Translation:
    """Write ``dest_dir/nats-server.conf``, which nats-server 2.15 accepts and which means ``conf``.

    The ``server { }`` wrapper is opened, the ``metrics { }`` block (fastnats's own) removed,
    an ``http { addr: ... }`` block turned into ``http: "host:port"`` (its other keys, such as
    the article's ``debug`` and ``pprof``, are dropped and reported in ``warnings``), includes
    inlined and variables resolved. Relative paths in values are left as written: nats-server
    reads them from its working directory, so start it from the caller's, not from ``dest_dir``.
    """
    text, warnings = conf._translation or _translation(conf)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "nats-server.conf"
    # Written aside and renamed: a nats-server reloading it never reads half a conf.
    fd, temporary = tempfile.mkstemp(prefix=".nats-server.conf.", dir=dest)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return Translation(path, warnings)


def _translation(conf: Conf) -> tuple[str, tuple[str, ...]]:
    """The text :func:`translate` writes for ``conf``, and its warnings."""
    settings = _unwrapped(conf.tree)
    _check_expansion(settings)
    _, warnings = _monitor(settings)
    out: dict[str, object] = {}
    for entry in settings.entries():
        name = entry.key.lower()
        if name == "metrics" or _only_a_variable(entry, _TOP_LEVEL):
            continue
        if name in ("http", "https") and isinstance(entry.value, Section):
            host, port, _ = _monitor_block(entry)
            out[entry.key] = _join_hostport(host, port)
        else:
            out[entry.key] = _plain(entry.value, _TOP_LEVEL.blocks.get(name))
    return f"# Translated by fastnats from {str(conf.path)!r}.\n{dump(out)}", tuple(warnings)


def _join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Block(NamedTuple):
    """What nats-server reads in one kind of block: the keys it knows (lower case) and the
    blocks under some of them (``*``: under every key)."""

    known: frozenset[str]
    blocks: Mapping[str, _Block] = {}


def _keys(names: str) -> frozenset[str]:
    return frozenset(names.split())


# The keys nats-server 2.15 knows, from the switch of each block's parser in server/opts.go.
# Its parsers excuse an unknown key that a $reference uses, and only that: a known key applies
# even when a reference uses it. Blocks left out here (tls, and parsers that excuse nothing) keep
# every key, so that nats-server decides as it would on the conf itself.
_ACCOUNT = _Block(_keys("nkey imports exports jetstream users default_permissions mappings maps "
                        "limits msg_trace trace_dest"))
_TOP_LEVEL = _Block(_keys("""
    listen client_advertise port server_name host net debug trace trace_verbose trace_headers
    logtime logtime_utc mappings maps disable_sublist_cache no_sublist_cache accounts
    default_sentinel authorization http https http_port monitor_port https_port http_base_path
    cluster gateway leaf leafnodes store_dir storedir jetstream logfile log_file
    logfile_size_limit log_size_limit logfile_max_num log_max_num syslog remote_syslog pidfile
    pid_file ports_file_dir prof_port prof_block_rate max_control_line max_payload max_pending
    proxy_protocol max_connections max_conn max_traced_msg_len max_subscriptions max_subs
    max_sub_tokens max_subscription_tokens ping_interval ping_max tls ocsp allow_non_tls
    write_deadline write_timeout lame_duck_duration lame_duck_grace_period operator operators
    roots root root_operators root_operator resolver account_resolver accounts_resolver
    resolver_tls resolver_preload resolver_pinned_accounts no_auth_user system_account system
    no_system_account no_system no_sys_acc no_header_support trusted trusted_keys
    connect_error_reports reconnect_error_reports websocket ws mqtt server_tags server_metadata
    feature_flags default_js_domain ocsp_cache no_fast_producer_stall max_closed_clients
    proxies"""), {
    "cluster": _Block(_keys("""
        name listen port host net authorization routes tls cluster_advertise advertise
        no_advertise connect_retries connect_backoff permissions pool_size accounts compression
        ping_interval ping_max write_deadline write_timeout""")),
    "gateway": _Block(_keys("""
        name listen port host net authorization tls advertise connect_retries connect_backoff
        gateways reject_unknown reject_unknown_cluster write_deadline write_timeout""")),
    **dict.fromkeys(("leaf", "leafnodes"), _Block(_keys("""
        listen port host net authorization remotes reconnect reconnect_delay reconnect_interval
        dial_timeout tls leafnode_advertise advertise no_advertise min_version minimum_version
        compression isolate_leafnode_interest isolate write_deadline write_timeout"""))),
    "jetstream": _Block(_keys("""
        enabled enable disabled disable strict store store_dir storedir sync sync_interval
        max_memory_store max_mem_store max_mem max_file_store max_file domain key ek
        encryption_key prev_key prev_ek prev_encryption_key cipher extension_hint limits tpm
        unique_tag max_outstanding_catchup max_buffered_size max_buffered_msgs
        request_queue_limit info_queue_limit meta_compact meta_compact_size meta_compact_sync
        max_concurrent_io""")),
    "authorization": _Block(_keys("""
        user username pass password token timeout users default_permission
        default_permissions permissions auth_callout auth_hook proxy_required""")),
    # Every key of accounts { } names an account, except those a reference uses.
    "accounts": _Block(frozenset(), {"*": _ACCOUNT}),
    **dict.fromkeys(("websocket", "ws"), _Block(_keys("""
        listen port host net advertise no_tls tls same_origin allowed_origins allowed_origin
        allow_origins allow_origin origins origin handshake_timeout compress compression
        authorization authentication jwt_cookie user_cookie pass_cookie token_cookie
        no_auth_user headers ping_interval"""))),
    "mqtt": _Block(_keys("""
        listen port host net tls authorization authentication no_auth_user ack_wait ackwait
        js_api_timeout api_timeout max_ack_pending max_pending max_inflight js_domain
        stream_replicas consumer_replicas consumer_memory_storage consumer_inactive_threshold
        consumer_auto_cleanup reject_qos2_publish downgrade_qos2_subscribe""")),
})


def _only_a_variable(entry: Entry, block: _Block | None) -> bool:
    """True for a key that nats-server skips in ``block``: one a $reference uses and that is no
    setting there."""
    return (entry.used_as_variable and block is not None
            and entry.key.lower() not in block.known)


def _plain(value: Value, block: _Block | None) -> object:
    """``value`` without the keys nats-server skips (see :func:`_only_a_variable`)."""
    if isinstance(value, Section):
        inner = {} if block is None else block.blocks
        return {e.key: _plain(e.value, inner.get(e.key.lower(), inner.get("*")))
                for e in value.entries() if not _only_a_variable(e, block)}
    if isinstance(value, list):
        return [_plain(item, None) for item in value]
    return value


class _TooDeep(Exception):
    pass


def _check_expansion(settings: Section) -> None:
    """Raise ConfError if resolving the $references would write more than MAX_TOTAL_BYTES or
    nest deeper than MAX_DEPTH: a reference copies its value without adding to the file, so a
    conf of a few lines can otherwise expand tenfold per line."""
    # (bytes written, depth) of each block and array, which references share: each is
    # measured once, so the count takes no longer than the parse did.
    measured: dict[int, tuple[int, int]] = {}

    def measure(value: Value, level: int) -> tuple[int, int]:
        if isinstance(value, str):
            return len(value) + 3, 0
        if not isinstance(value, (Section, list)):
            return len(str(value)) + 1, 0
        found = measured.get(id(value))
        if found is None:
            if level >= MAX_DEPTH:
                raise _TooDeep
            size, depth = 2, 0
            items: Iterator[tuple[str, Value]] = (
                ((e.key, e.value) for e in value.entries()) if isinstance(value, Section)
                else (("", item) for item in value))
            for key, item in items:
                item_size, item_depth = measure(item, level + 1)
                size += len(key) + 2 + item_size
                depth = max(depth, item_depth + 1)
            found = measured[id(value)] = size, depth
        if level + found[1] > MAX_DEPTH:
            raise _TooDeep
        return found

    total = 0
    for entry in settings.entries():
        try:
            size, _ = measure(entry.value, 0)
        except _TooDeep:
            raise ConfError(f"{entry.where}: $references nest this setting more than "
                            f"{MAX_DEPTH} deep, the most a translated conf may") from None
        if _only_a_variable(entry, _TOP_LEVEL):
            continue  # not written itself; only where it is used
        total += size
        if total > MAX_TOTAL_BYTES:
            raise ConfError(f"{entry.where}: $references expand the conf past "
                            f"{_size_text(MAX_TOTAL_BYTES)} by this setting, the most a "
                            f"translated conf may hold")


# -- writing


_BARE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_WRITE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def dump(tree: Mapping[str, object]) -> str:
    """Conf text for ``tree`` (a :class:`Section` or plain dicts, lists and scalars).

    Strings are always double-quoted, so a string never comes back as a number or a boolean.
    """
    return "".join(f"{line}\n" for line in _dump_block(tree, ""))


def _dump_block(tree: Mapping[str, object], indent: str) -> Iterator[str]:
    for key, value in tree.items():
        yield f"{indent}{_dump_key(key)}: {_dump_value(value, indent)}"


def _dump_key(key: str) -> str:
    if _BARE_KEY.fullmatch(key):
        return key
    for quote in ('"', "'"):
        if quote not in key and "\n" not in key:
            # Quoted keys have no escapes in nats-server.
            return f"{quote}{key}{quote}"
    raise ValueError(f"key {key!r} cannot be written in nats-server.conf")


def _dump_value(value: object, indent: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"integer {value} does not fit nats-server's 64 bits")
        return str(value)
    if isinstance(value, float):
        return _dump_float(value)
    if isinstance(value, str):
        return '"' + "".join(_dump_char(char) for char in value) + '"'
    inner = indent + "  "
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{\n" + "".join(f"{line}\n" for line in _dump_block(value, inner)) + indent + "}"
    if isinstance(value, (list, tuple)):
        items = [_dump_value(item, inner) for item in value]
        if not any("\n" in item for item in items):
            return "[" + ", ".join(items) + "]"
        return "[\n" + "".join(f"{inner}{item}\n" for item in items) + indent + "]"
    raise TypeError(f"cannot write a {type(value).__name__} to nats-server.conf")


def _dump_char(char: str) -> str:
    if char in _WRITE_ESCAPES:
        return _WRITE_ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\x{ord(char):02x}"
    return char


def _dump_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be written in nats-server.conf")
    text = repr(value)
    if "e" in text:
        # nats-server has no exponent syntax: 1e+20 would read as the string "1e+20".
        text = format(Decimal(text), "f")
    return text if "." in text else f"{text}.0"
