"""Temporal's visibility query language, the subset redurable answers (docs/visibility.md):

    query      := [expr] [ORDER BY field [ASC|DESC]]
    expr       := and_expr (OR and_expr)*
    and_expr   := term (AND term)*
    term       := '(' expr ')' | field op value | field [NOT] BETWEEN value AND value
                | field [NOT] IN '(' value (',' value)* ')' | field STARTS_WITH string
    op         := = | != | <> | < | <= | > | >=
    value      := 'string' | "string" | number | true | false

Keywords are case-insensitive; field names are not. A tokenizer and a recursive-descent
parser, pure: text in, a tree of frozen dataclasses out, or InvalidQueryError naming the
position (0-based character offset) where the query stops making sense.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidArgumentError


class InvalidQueryError(InvalidArgumentError):
    """A visibility query that does not parse or does not fit the attributes' types
    (Temporal answers INVALID_ARGUMENT). `position` is the character offset, or None."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"invalid query{where}: {message}")
        self.position = position


Value = str | int | float | bool


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str  # = != < <= > >=
    value: Value
    position: int


@dataclass(frozen=True)
class Between:
    field: str
    low: Value
    high: Value
    negated: bool
    position: int


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Value, ...]
    negated: bool
    position: int


@dataclass(frozen=True)
class StartsWith:
    field: str
    prefix: str
    position: int


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


Node = Comparison | Between | In | StartsWith | And | Or
Leaf = Comparison | Between | In | StartsWith


@dataclass(frozen=True)
class Query:
    where: Node | None
    order_by: str = "StartTime"
    descending: bool = True


@dataclass(frozen=True)
class Token:
    kind: str  # ident, keyword, string, number, op, lparen, rparen, comma, end
    text: str
    value: Value
    position: int


KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN", "STARTS_WITH", "ORDER", "BY",
                      "ASC", "DESC", "TRUE", "FALSE"})
ORDER_FIELDS = frozenset({"StartTime", "CloseTime"})
MAX_QUERY_CHARS = 4096

_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = ("<=", ">=", "!=", "<>", "=", "<", ">")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
            continue
        ch = text[pos]
        if ch in "'\"":
            tokens.append(_string(text, pos))
            pos = tokens[-1].position + len(tokens[-1].text)
        elif ch == "(":
            tokens.append(Token("lparen", ch, ch, pos))
            pos += 1
        elif ch == ")":
            tokens.append(Token("rparen", ch, ch, pos))
            pos += 1
        elif ch == ",":
            tokens.append(Token("comma", ch, ch, pos))
            pos += 1
        elif op := next((o for o in _OPS if text.startswith(o, pos)), None):
            tokens.append(Token("op", op, "!=" if op == "<>" else op, pos))
            pos += len(op)
        elif number := _NUMBER.match(text, pos):
            raw = number.group()
            value: Value = float(raw) if number.group(1) or number.group(2) else int(raw)
            tokens.append(Token("number", raw, value, pos))
            pos = number.end()
        elif ident := (_IDENT.match(text, pos) or (
                re.compile(r"`([^`]+)`").match(text, pos) if ch == "`" else None)):
            raw = ident.group()
            name = raw.strip("`")
            if raw[0] != "`" and name.upper() in KEYWORDS:
                word = name.upper()
                if word in ("TRUE", "FALSE"):
                    tokens.append(Token("bool", raw, word == "TRUE", pos))
                else:
                    tokens.append(Token("keyword", raw, word, pos))
            else:
                tokens.append(Token("ident", raw, name, pos))
            pos = ident.end()
        else:
            raise InvalidQueryError(f"unexpected character {ch!r}", pos)
    tokens.append(Token("end", "", "", len(text)))
    return tokens


def _string(text: str, start: int) -> Token:
    quote = text[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        ch = text[pos]
        if ch == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif ch == quote:
            if text.startswith(quote * 2, pos):  # SQL's doubled quote
                out.append(quote)
                pos += 2
            else:
                return Token("string", text[start : pos + 1], "".join(out), start)
        else:
            out.append(ch)
            pos += 1
    raise InvalidQueryError("string not closed", start)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def is_keyword(self, word: str) -> bool:
        return self.token.kind == "keyword" and self.token.value == word

    def expect_keyword(self, word: str) -> None:
        if not self.is_keyword(word):
            raise InvalidQueryError(f"expected {word}, found {self.describe()}",
                                    self.token.position)
        self.take()

    def describe(self) -> str:
        return "the end of the query" if self.token.kind == "end" else repr(self.token.text)

    def query(self) -> Query:
        where = None
        if self.token.kind != "end" and not self.is_keyword("ORDER"):
            where = self.expr()
        order_by, descending = "StartTime", True
        if self.is_keyword("ORDER"):
            self.take()
            self.expect_keyword("BY")
            field = self.take()
            if field.kind != "ident" or field.value not in ORDER_FIELDS:
                raise InvalidQueryError(
                    f"ORDER BY takes StartTime or CloseTime, not {field.text or 'nothing'}",
                    field.position,
                )
            order_by = str(field.value)
            if self.is_keyword("ASC") or self.is_keyword("DESC"):
                descending = self.take().value == "DESC"
        if self.token.kind != "end":
            raise InvalidQueryError(f"unexpected {self.describe()}", self.token.position)
        return Query(where, order_by, descending)

    def expr(self) -> Node:
        parts = [self.and_expr()]
        while self.is_keyword("OR"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.term()]
        while self.is_keyword("AND"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def term(self) -> Node:
        if self.token.kind == "lparen":
            self.take()
            node = self.expr()
            if self.token.kind != "rparen":
                raise InvalidQueryError(f"expected ')', found {self.describe()}",
                                        self.token.position)
            self.take()
            return node
        field = self.take()
        if field.kind != "ident":
            raise InvalidQueryError(f"expected a search attribute name, found "
                                    f"{field.text!r}" if field.kind != "end" else
                                    "expected a search attribute name, found the end of the "
                                    "query", field.position)
        name = str(field.value)
        negated = False
        if self.is_keyword("NOT"):
            self.take()
            negated = True
            if not (self.is_keyword("BETWEEN") or self.is_keyword("IN")):
                raise InvalidQueryError(f"expected BETWEEN or IN after NOT, found "
                                        f"{self.describe()}", self.token.position)
        if self.token.kind == "op":
            op = str(self.take().value)
            return Comparison(name, op, self.value(), field.position)
        if self.is_keyword("BETWEEN"):
            self.take()
            low = self.value()
            self.expect_keyword("AND")
            return Between(name, low, self.value(), negated, field.position)
        if self.is_keyword("IN"):
            self.take()
            if self.token.kind != "lparen":
                raise InvalidQueryError(f"expected '(' after IN, found {self.describe()}",
                                        self.token.position)
            self.take()
            values = [self.value()]
            while self.token.kind == "comma":
                self.take()
                values.append(self.value())
            if self.token.kind != "rparen":
                raise InvalidQueryError(f"expected ',' or ')', found {self.describe()}",
                                        self.token.position)
            self.take()
            return In(name, tuple(values), negated, field.position)
        if self.is_keyword("STARTS_WITH"):
            self.take()
            prefix = self.take()
            if prefix.kind != "string":
                raise InvalidQueryError("STARTS_WITH takes a string", prefix.position)
            return StartsWith(name, str(prefix.value), field.position)
        raise InvalidQueryError(
            f"expected an operator (=, !=, <, <=, >, >=, BETWEEN, IN, STARTS_WITH) after "
            f"{name}, found {self.describe()}", self.token.position)

    def value(self) -> Value:
        token = self.take()
        if token.kind not in ("string", "number", "bool"):
            raise InvalidQueryError(
                f"expected a value ('text', a number, true or false), found "
                f"{token.text!r}" if token.kind != "end" else
                "expected a value, found the end of the query", token.position)
        return token.value


def parse(text: str) -> Query:
    """The query's tree; an empty query (or only ORDER BY) matches every workflow."""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidQueryError(f"longer than {MAX_QUERY_CHARS} characters")
    return _Parser(text).query()
